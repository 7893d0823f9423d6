# taskhub: the management server in a small image.
#
#   docker build -t taskhub .
#   docker run -p 7071:7071 -e TASKHUB_ACCESS_KEY=change-me -v taskhub-data:/data taskhub
#
# The server listens on 0.0.0.0 inside the container, so it refuses to start without an access
# key (TASKHUB_ACCESS_KEY) unless TASKHUB_ALLOW_UNAUTHENTICATED_PUBLIC=true says otherwise.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that editing the sources does not rebuild them.
# The bench crate is a workspace member, so its manifest must be there for cargo to load the
# workspace; only the taskhub package is built.
COPY Cargo.toml Cargo.lock ./
COPY bench ./bench
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked -p taskhub --bin taskhub \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked -p taskhub --bin taskhub \
    && strip target/release/taskhub

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data taskhub \
    && mkdir -p /data /etc/taskhub && chown taskhub /data
COPY --from=build /src/target/release/taskhub /usr/local/bin/taskhub
COPY config/taskhub.toml /etc/taskhub/taskhub.toml
USER taskhub
WORKDIR /data
ENV TASKHUB_SQLITE_PATH=/data/taskhub.db \
    TASKHUB_LISTEN=0.0.0.0:7071
EXPOSE 7071
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["taskhub"]
CMD ["serve", "--config", "/etc/taskhub/taskhub.toml"]
