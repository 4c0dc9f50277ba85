-- Push times to the microsecond (issue 10): tags pushed in the same second must still have an
-- order for "keep the newest N". The second-resolution columns stay (garbage collection's
-- grace window and listings use them); rows from before keep their second, at .000000.
ALTER TABLE manifests ADD COLUMN created_at_us INTEGER;
UPDATE manifests SET created_at_us = created_at * 1000000;
ALTER TABLE tags ADD COLUMN updated_at_us INTEGER;
UPDATE tags SET updated_at_us = updated_at * 1000000;
