CREATE TABLE "kbs_resources" (
	"id" text PRIMARY KEY NOT NULL,
	"bytes_enc" "bytea" NOT NULL,
	"policy_name" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "kbs_sessions" (
	"id" text PRIMARY KEY NOT NULL,
	"tee" text NOT NULL,
	"nonce" text NOT NULL,
	"state" text NOT NULL,
	"token_enc" "bytea",
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"claimed_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "kbs_resources" ADD CONSTRAINT "kbs_resources_policy_name_policies_name_fk" FOREIGN KEY ("policy_name") REFERENCES "public"."policies"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "kbs_resources_policy_name_idx" ON "kbs_resources" USING btree ("policy_name");--> statement-breakpoint
CREATE INDEX "kbs_sessions_expires_at_idx" ON "kbs_sessions" USING btree ("expires_at");