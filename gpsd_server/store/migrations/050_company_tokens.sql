-- Company accounts (issue 16): a `company` token is bound to exactly one
-- company of the vehicle registry and sees only that company's vehicles; the
-- city's own roles are bound to none.
ALTER TABLE api_tokens ADD COLUMN company text;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('viewer', 'operator', 'admin', 'company'));
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_company_bound
    CHECK ((role = 'company') = (company IS NOT NULL AND company <> ''));
