# syntax=docker/dockerfile:1
#
# puaside container image: a static Go binary on a distroless base, run as
# an unprivileged user. Build from the repository root:
#
#   docker build -t puaside:latest --build-arg VERSION=1.2.3 .
#
# The image reads /etc/puaside/puaside.yaml (mount your configuration there)
# and keeps its working files (the default SQLite database) in
# /var/lib/puaside. See docs/operator-guide.md.

ARG GO_VERSION=1.26

############################ build stage ####################################
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
# CGO_ENABLED=0: a static binary (the SQLite driver is pure Go), so the
# final image needs no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/puaside/puaside/internal/buildinfo.version=${VERSION} -X github.com/puaside/puaside/internal/buildinfo.revision=${REVISION}" -o /out/puaside ./cmd/puaside \
 && mkdir -p /out/state

############################ final stage ####################################
# distroless/static: CA certificates, /etc/passwd with "nonroot" (65532),
# no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/puaside /puaside
# An empty state directory owned by the runtime user: a named volume mounted
# here starts with this ownership.
COPY --from=build --chown=65532:65532 /out/state /var/lib/puaside
WORKDIR /var/lib/puaside
USER 65532:65532
# SIP (pua listen), replicate copies, trace copies, HEPv3, HTTP API.
EXPOSE 5080/udp 5080/tcp 5090/udp 5090/tcp 5091/udp 9060/udp 8080/tcp
ENTRYPOINT ["/puaside"]
CMD ["run", "-config", "/etc/puaside/puaside.yaml"]
