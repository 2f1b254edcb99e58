# The broker image: the workspace with its dependencies, run from source with tsx (no separate build step to drift).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NX_DAEMON=false
COPY . .
# dev dependencies included: tsx runs the TypeScript sources
RUN npm ci --no-audit --no-fund && mkdir -p /data && chown node:node /data
USER node
ENV KB_DATA_DIR=/data KB_LISTEN=0.0.0.0:44444 KB_ADMIN_LISTEN=0.0.0.0:44445
# A larger young generation: request objects live a few milliseconds, and with the default 16 MB semi-spaces many
# survive into the old generation, costing the broker ~10 % of its CPU per launch in GC (measured by bench:broker).
ENV NODE_OPTIONS=--max-semi-space-size=32
VOLUME /data
EXPOSE 44444 44445
ENTRYPOINT ["node_modules/.bin/tsx", "apps/broker/src/main.ts"]
