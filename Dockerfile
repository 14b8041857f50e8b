# syntax=docker/dockerfile:1
# Build stage: compile a release binary (assets are embedded, so nothing else ships).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY static ./static
COPY benches ./benches
# A workspace member: cargo reads its manifest even when building webhooker alone.
COPY tools ./tools
RUN cargo build --release --locked --bin webhooker && strip target/release/webhooker

# Runtime stage: small Debian with CA certificates for HTTPS targets, non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data webhooker \
 && mkdir -p /data && chown webhooker /data
COPY --from=build /src/target/release/webhooker /usr/local/bin/webhooker
USER webhooker
ENV DATA_DIR=/data PORT=8080 WEBHOOKER_ENVIRONMENT=prod
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["webhooker", "healthcheck"]
ENTRYPOINT ["webhooker"]
