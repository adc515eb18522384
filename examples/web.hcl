# A small web service: two instances of a tiny HTTP responder.
# Run it with `yurt job run examples/web.hcl`; edit GREETING and try `yurt job plan` first.
job "web" {
  datacenters = ["dc1"]
  type        = "service"

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
