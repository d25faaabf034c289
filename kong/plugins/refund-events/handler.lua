-- refund-events: an example Kong Lua plugin (Kong 3.6 to 3.10) that emits the event
-- `payments.refund-issued` for the event_hooks filter, which delivers it to the hooks a
-- configuration attaches to it (kong/kong-emit.yml; docs/src/sources/published.md).
--
-- How it reaches the filter: Kong 3.6 and later give wasm filters a property namespace over
-- `kong.ctx.shared` (kong/runloop/wasm.lua). The filter reads the property
-- `kong.ctx.shared.event_hooks` once, in its log phase, and gets `tostring()` of the Lua value
-- stored there: so the value must be a string of JSON, `{"<source>.<event>": {data}, ...}`,
-- made with cjson. A table stored as it is reaches the filter as `table: 0x...` and is dropped
-- (counted `malformed`).
--
-- When: the filter reads the property in its log phase. Kong runs Lua plugins phase by phase
-- in descending PRIORITY order, but the filter chain is not one of them: ngx_wasm_module runs
-- it in nginx's own phases, and whether a Lua plugin's `log` runs before or after the filter's
-- log phase is nginx's module order, which Kong does not document. So this plugin emits in
-- `header_filter`, which always runs before any log phase: the status is known there, and the
-- request's body was read in `access`. Its PRIORITY (800) then only orders it among other Lua
-- plugins that emit too; since each one adds its event to what is already there, any order
-- works.
--
-- Kong 3.4 and 3.5 have no such namespace: there, the filter never reads it and this plugin's
-- events go nowhere.

local cjson = require "cjson.safe"

local kong = kong
local type = type

-- The key of kong.ctx.shared the filter reads (the property kong.ctx.shared.event_hooks).
local CHANNEL = "event_hooks"
-- `<source>.<event>`: the source and event the configuration's `publish` declares.
local EVENT = "payments.refund-issued"

local RefundEvents = {
  PRIORITY = 800,
  VERSION = "1.0.0",
}

-- Adds one event to what this request emits, keeping the events other plugins emitted before:
-- decode, add, encode.
local function emit(event, data)
  local shared = kong.ctx.shared
  local events = type(shared[CHANNEL]) == "string" and cjson.decode(shared[CHANNEL]) or nil
  if type(events) ~= "table" then
    events = {}
  end
  events[event] = data
  local text, err = cjson.encode(events)
  if not text then
    kong.log.warn("cannot encode ", event, ": ", err)
    return
  end
  shared[CHANNEL] = text
end

-- The refund the request asks for, from its JSON body: kept for header_filter.
function RefundEvents:access(conf)
  if kong.request.get_method() ~= "POST" or kong.request.get_path() ~= conf.path then
    return
  end
  local body = kong.request.get_body("application/json")
  if type(body) ~= "table" then
    return
  end
  kong.ctx.plugin.refund = {
    order_id = body.order_id,
    amount = body.amount,
    currency = body.currency or conf.currency,
  }
end

-- The upstream answered: emit the refund if it was issued.
function RefundEvents:header_filter(conf)
  local refund = kong.ctx.plugin.refund
  if refund and kong.response.get_status() == conf.status then
    emit(EVENT, refund)
  end
end

return RefundEvents
