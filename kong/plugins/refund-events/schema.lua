-- refund-events: the configuration of the example plugin that emits `payments.refund-issued`
-- for the event_hooks filter (docs/src/sources/published.md, "Emitting from your filters").
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "refund-events",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          -- The request that issues a refund, and the status that says it was issued.
          { path = { type = "string", required = true, default = "/refunds" } },
          { status = { type = "integer", required = true, default = 201,
                       between = { 100, 599 } } },
          -- When the request's body names no currency.
          { currency = { type = "string", required = true, default = "EUR" } },
        },
    } },
  },
}
