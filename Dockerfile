# veil's agent image for the Kubernetes DaemonSet (veil install --kubernetes).
# Build: docker build -t veil:0.1.0 .   (then push it where your nodes pull from, and pass --image)
#
# Stage 1 builds the native datapath addon (node-gyp: python3, make, g++) and the TypeScript, then
# drops the development dependencies. Stage 2 is a slim Node runtime with only what the agent runs:
# iproute2 and procps (the agent runs `ip` and `sysctl`), the compiled JavaScript, the addon and the
# production node_modules.
FROM node:20-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY native ./native
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/veil
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/Release/veil_datapath.node ./build/Release/veil_datapath.node
RUN ln -s /opt/veil/dist/src/cli/main.js /usr/local/bin/veil \
 && chmod +x /opt/veil/dist/src/cli/main.js
ENV NODE_ENV=production
# The DaemonSet runs `veil agent run --kubernetes`; it needs CAP_NET_ADMIN and /dev/net/tun.
ENTRYPOINT ["veil"]
CMD ["agent", "run", "--kubernetes"]
