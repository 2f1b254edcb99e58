CREATE TABLE "snp_certificates" (
	"key" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"product" text NOT NULL,
	"der" "bytea" NOT NULL,
	"source" text NOT NULL,
	"expires_at" timestamp with time zone,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "snp_certificates_kind_product_idx" ON "snp_certificates" USING btree ("kind","product");