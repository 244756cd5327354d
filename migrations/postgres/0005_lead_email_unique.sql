-- At most one live validated lead per email (ignoring ASCII case, as lower() folds on these
-- columns on both databases): two leads with one address cannot both be verified.
CREATE UNIQUE INDEX leads_validated_email_unique ON leads (lower(email)) WHERE is_validated AND NOT deleted;
