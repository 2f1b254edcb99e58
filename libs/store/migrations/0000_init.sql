CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"event" text NOT NULL,
	"launch_id" text,
	"client_id" text,
	"peer" text,
	"ref_id" text,
	"outcome" text NOT NULL,
	"detail" jsonb
);
--> statement-breakpoint
CREATE TABLE "connections" (
	"client_id" uuid PRIMARY KEY NOT NULL,
	"key_enc" "bytea" NOT NULL,
	"launch_id" uuid NOT NULL,
	"sev_policy" bigint NOT NULL,
	"api_major" integer NOT NULL,
	"api_minor" integer NOT NULL,
	"build_id" integer NOT NULL,
	"launch_digest" "bytea" NOT NULL,
	"chip_id" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "keysets" (
	"id" text PRIMARY KEY NOT NULL,
	"secret_ids" jsonb NOT NULL,
	"policy_name" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "launch_sessions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"keys_enc" "bytea",
	"sev_policy" bigint NOT NULL,
	"chip_id" text NOT NULL,
	"generation" text NOT NULL,
	"chain_sha256" "bytea" NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"consumed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "policies" (
	"name" text PRIMARY KEY NOT NULL,
	"document" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "release_counts" (
	"key" text PRIMARY KEY NOT NULL,
	"count" bigint NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "report_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"private_key_enc" "bytea" NOT NULL,
	"policy_name" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "resources" (
	"id" text PRIMARY KEY NOT NULL,
	"bytes_enc" "bytea" NOT NULL,
	"policy_name" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "secrets" (
	"id" text PRIMARY KEY NOT NULL,
	"value_enc" "bytea" NOT NULL,
	"policy_name" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "store_meta" (
	"key" text PRIMARY KEY NOT NULL,
	"value" "bytea" NOT NULL
);
--> statement-breakpoint
ALTER TABLE "keysets" ADD CONSTRAINT "keysets_policy_name_policies_name_fk" FOREIGN KEY ("policy_name") REFERENCES "public"."policies"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "report_keys" ADD CONSTRAINT "report_keys_policy_name_policies_name_fk" FOREIGN KEY ("policy_name") REFERENCES "public"."policies"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "resources" ADD CONSTRAINT "resources_policy_name_policies_name_fk" FOREIGN KEY ("policy_name") REFERENCES "public"."policies"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "secrets" ADD CONSTRAINT "secrets_policy_name_policies_name_fk" FOREIGN KEY ("policy_name") REFERENCES "public"."policies"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "audit_log_launch_id_idx" ON "audit_log" USING btree ("launch_id");--> statement-breakpoint
CREATE INDEX "connections_expires_at_idx" ON "connections" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "keysets_policy_name_idx" ON "keysets" USING btree ("policy_name");--> statement-breakpoint
CREATE INDEX "keysets_secret_ids_idx" ON "keysets" USING gin ("secret_ids");--> statement-breakpoint
CREATE INDEX "launch_sessions_expires_at_idx" ON "launch_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "launch_sessions_pending_idx" ON "launch_sessions" USING btree ("expires_at") WHERE "launch_sessions"."consumed_at" IS NULL;--> statement-breakpoint
CREATE INDEX "report_keys_policy_name_idx" ON "report_keys" USING btree ("policy_name");--> statement-breakpoint
CREATE INDEX "resources_policy_name_idx" ON "resources" USING btree ("policy_name");--> statement-breakpoint
CREATE INDEX "secrets_policy_name_idx" ON "secrets" USING btree ("policy_name");