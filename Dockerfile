# The broker image. Two stages: the build stage installs everything and compiles (each app's `prepare` script runs
# tools/build/build.mjs during `npm ci`); the runtime stage ships only the compiled apps and their one runtime
# dependency left outside the bundles (PGlite: its WebAssembly and data files are loaded from its own folder).
FROM node:20-bookworm-slim AS build
WORKDIR /app
ENV NX_DAEMON=false
COPY . .
RUN npm ci --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# kb-broker: bundle, ECDH worker, proto files, migrations and the prepared database template (apps/broker/dist);
# kbctl for the HEALTHCHECK and for owners (`docker compose exec broker kbctl ...`).
COPY --from=build /app/apps/broker/dist apps/broker/dist
COPY --from=build /app/apps/kbctl/dist apps/kbctl/dist
COPY --from=build /app/node_modules/@electric-sql/pglite node_modules/@electric-sql/pglite
RUN ln -s /app/apps/broker/dist/main.js /usr/local/bin/kb-broker \
 && ln -s /app/apps/kbctl/dist/main.mjs /usr/local/bin/kbctl \
 && mkdir -p /data && chown node:node /data
USER node
ENV KB_DATA_DIR=/data KB_LISTEN=0.0.0.0:44444 KB_ADMIN_LISTEN=0.0.0.0:44445 KB_HTTP_LISTEN=0.0.0.0:44446 KB_BROKER_URL=127.0.0.1:44444
VOLUME /data
EXPOSE 44444 44445 44446
# gRPC health (grpc.health.v1.Health) on the guest listener, asked by kbctl itself: no extra probe binary.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["kbctl", "health"]
# A larger young generation: request objects live a few milliseconds, and with the default 16 MB semi-spaces many
# survive into the old generation, costing the broker ~10 % of its CPU per launch in GC (measured by bench:broker).
ENTRYPOINT ["node", "--max-semi-space-size=32", "/app/apps/broker/dist/main.js"]
