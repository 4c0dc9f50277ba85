-- Why a refused operation was refused (the rule, the missing permission, the quota), so the
-- audit log can answer "who tried what and was stopped by which policy".
ALTER TABLE audit_log ADD COLUMN detail TEXT;
