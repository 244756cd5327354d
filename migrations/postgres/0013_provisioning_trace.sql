-- The W3C trace context (`traceparent`) of the request that started a tenant's provisioning or
-- offboarding, when traces are on (docs/operations.md, "Traces"): the pipeline's result joins
-- that trace even when the pipeline does not pass the header on. NULL when traces are off.
ALTER TABLE tenant_provisioning ADD COLUMN traceparent TEXT;
