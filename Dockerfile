# orbit: every binary (satellite, storagenode, uplink) in one small image.
#   docker build -t orbit .
#   docker run --rm orbit --version
# The build stage compiles with the toolchain, protoc, and Node.js for the console's
# front end (built into the satellite binary); the runtime stage holds only the
# binaries, run as an unprivileged user.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN npm ci --prefix web/console --no-audit --no-fund --loglevel=error
RUN cargo build --release --locked -p satellite -p storagenode -p uplink \
    && mkdir /out \
    && cp target/release/satellite target/release/storagenode target/release/uplink /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/orbit --create-home orbit
COPY --from=build /out/ /usr/local/bin/
USER 10001
WORKDIR /var/lib/orbit
EXPOSE 7777 7778 7781 2379 2380
ENTRYPOINT ["satellite"]
