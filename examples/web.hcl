# A small web service: two instances of a tiny HTTP responder.
# Run it with `yurt job run examples/web.hcl`; edit GREETING and try `yurt job plan` first.
job "web" {
  datacenters = ["dc1"]
  type        = "service"

  # Updates roll one allocation at a time: the next starts once the new one has run for 2s.
  update {
    max_parallel     = 1
    min_healthy_time = "2s"
    healthy_deadline = "1m"
    progress_deadline = "2m"
  }

  group "app" {
    count = 2

    task "server" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo \"$GREETING from $YURT_ALLOC_ID\"; while true; do sleep 1; done"]
      }

      env {
        GREETING = "hello"
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
