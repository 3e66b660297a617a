# syntax=docker/dockerfile:1
# Switchyard: a static binary on a distroless, non-root base. The build runs `make build`, the same
# target CI runs, so the flags here are the flags CI exercises.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION} BIN=/out/switchyard

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="CloudEvents router, a drop-in for the Knative broker" \
      org.opencontainers.image.source="https://github.com/switchyard-events/switchyard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/switchyard /switchyard
USER nonroot:nonroot
# 8080: broker ingress; 9090: admin (probes, metrics, admin API). Mount the config at /etc/switchyard.
EXPOSE 8080 9090
ENTRYPOINT ["/switchyard"]
CMD ["serve", "--config", "/etc/switchyard"]
