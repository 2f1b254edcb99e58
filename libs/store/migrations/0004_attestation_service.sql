CREATE TABLE "firmware_images" (
	"sha256" "bytea" PRIMARY KEY NOT NULL,
	"image" "bytea" NOT NULL,
	"size" integer NOT NULL,
	"added_by" text NOT NULL,
	"added_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "owner_tokens" (
	"name" text PRIMARY KEY NOT NULL,
	"token_sha256" "bytea" NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "owner_tokens_token_sha256_unique" UNIQUE("token_sha256")
);
--> statement-breakpoint
CREATE TABLE "vm_launches" (
	"launch_id" uuid PRIMARY KEY NOT NULL,
	"vm_uuid" uuid NOT NULL,
	"cpu_signature" bigint,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "vm_registrations" (
	"uuid" uuid PRIMARY KEY NOT NULL,
	"owner" text NOT NULL,
	"document_enc" "bytea" NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "vm_registrations_owner_idx" ON "vm_registrations" USING btree ("owner","uuid");