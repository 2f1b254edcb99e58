ALTER TABLE "connections" ADD COLUMN "launch_description" text;--> statement-breakpoint
ALTER TABLE "report_keys" ADD COLUMN "sign_launch_description" boolean DEFAULT false NOT NULL;