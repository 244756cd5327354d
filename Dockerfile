# tms in a container: built with the Rust toolchain the project builds with, run as a non-root
# user on a small Debian image with nothing but the binary, its CA certificates and the example
# pipelines. The binary runs the same without it: `cargo run` stays the way to try it locally.
#
#   docker build -t tms .
#   docker run -p 3005:3005 -e JWT_SECRET=… -e DATABASE_URL=postgres://… tms
#
# Or the whole stack (PostgreSQL, Redis, NATS): docker compose up (compose.yaml).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tms \
 && install -D -m 0755 target/release/tms /out/tms

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tms --create-home tms
COPY --from=build /out/tms /usr/local/bin/tms
COPY --chown=root:root pipelines /usr/local/lib/tms/pipelines
USER tms
WORKDIR /var/lib/tms
ENV TMS_ENV=prod \
    HOST=0.0.0.0 \
    PORT=3005 \
    TMS_DATA_DIR=/var/lib/tms/data \
    PIPELINES_DIR=/usr/local/lib/tms/pipelines
VOLUME ["/var/lib/tms/data"]
EXPOSE 3005
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["tms", "health"]
ENTRYPOINT ["tms"]
CMD ["serve"]
