-- A contact's type is `contact_type`, as in the original's schema, so that tms reads the same
-- column on a schema it created and on one it took over (docs/switch-over.md). A schema taken
-- over from the original has it already.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
               AND table_name = 'contacts' AND column_name = 'type') THEN
        ALTER TABLE contacts RENAME COLUMN type TO contact_type;
    END IF;
END $$;
