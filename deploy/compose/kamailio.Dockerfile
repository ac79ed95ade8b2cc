# Kamailio 5.6 from Debian 12 with the modules deploy/kamailio/*.cfg load
# (presence, MySQL and SQLite drivers). Used by docker-compose.yml for both the
# registrar and the presence server; the configuration file and its defines
# are given on the command line.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      kamailio kamailio-presence-modules kamailio-mysql-modules kamailio-sqlite-modules \
 && rm -rf /var/lib/apt/lists/*
# The package creates the "kamailio" system user; the SIP ports are above 1024.
USER kamailio
WORKDIR /tmp
# -DD -E: stay in the foreground, log to stderr (docker logs).
ENTRYPOINT ["kamailio", "-DD", "-E", "-Y", "/tmp", "-w", "/tmp"]
