# A web server in a container: busybox's httpd serving a page the task writes at start.
# Needs Docker on the client (the dev agent uses DOCKER_HOST, else /var/run/docker.sock).
# Run it with `yurt job run examples/docker.hcl`; `yurt job status hello-docker` shows the
# allocation, `yurt alloc status <id>` the host port mapped to the container's 8080.
job "hello-docker" {
  group "web" {
    count = 1

    network {
      port "http" {
        to = 8080
      }
    }

    task "httpd" {
      driver = "docker"

      config {
        image   = "busybox:1.36"
        command = "/bin/sh"
        args    = ["-c", "echo \"hello from $NOMAD_ALLOC_ID\" > /local/index.html && exec httpd -f -p 8080 -h /local"]
        ports   = ["http"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
