-- Wireshark dissector for PCIeOE frames and the TLPs inside them.
-- The layout is documented next to the codecs: src/fabric/wire/frame.ts (frame),
-- src/fabric/tlp/tlp.ts (TLP) and src/fabric/wire/management.ts (discovery and
-- management messages). Use: tshark -X lua_script:lab/wireshark/pcieoe.lua

local pcieoe = Proto("pcieoe", "PCIe over Ethernet")

local frame_types = { [0] = "TLP", [1] = "ACK", [2] = "NAK", [3] = "Heartbeat", [4] = "Discovery", [5] = "Management" }

local f = pcieoe.fields
f.version = ProtoField.uint8("pcieoe.version", "Version", base.DEC, nil, 0xf0)
f.type = ProtoField.uint8("pcieoe.type", "Type", base.DEC, frame_types, 0x0f)
f.flags = ProtoField.uint8("pcieoe.flags", "Flags", base.HEX)
f.flag_acknow = ProtoField.bool("pcieoe.flags.ack_now", "ACK now", 8, nil, 0x01)
f.flag_replay = ProtoField.bool("pcieoe.flags.replay", "Replay", 8, nil, 0x02)
f.flag_probe_answer = ProtoField.bool("pcieoe.flags.probe_answer", "Probe answer", 8, nil, 0x04)
f.channel = ProtoField.uint16("pcieoe.channel", "Channel", base.DEC)
f.seq = ProtoField.uint16("pcieoe.seq", "Sequence number", base.DEC)
f.ack = ProtoField.uint16("pcieoe.ack", "Cumulative ACK (next expected)", base.DEC)
f.credits = ProtoField.uint16("pcieoe.credits", "Credit limit", base.DEC)
f.length = ProtoField.uint16("pcieoe.length", "Payload length", base.DEC)
f.crc = ProtoField.uint32("pcieoe.crc", "CRC-32", base.HEX)
f.epoch = ProtoField.uint32("pcieoe.epoch", "Sender epoch", base.HEX)
f.peer_epoch = ProtoField.uint32("pcieoe.peer_epoch", "Receiver epoch (as the sender knows it)", base.HEX)
f.payload = ProtoField.bytes("pcieoe.payload", "Payload")

local tlp_types = {
  [0x00] = "MRd32", [0x20] = "MRd64", [0x40] = "MWr32", [0x60] = "MWr64",
  [0x04] = "CfgRd0", [0x44] = "CfgWr0", [0x05] = "CfgRd1", [0x45] = "CfgWr1",
  [0x0a] = "Cpl", [0x4a] = "CplD", [0x30] = "Msg", [0x70] = "MsgD",
}
local cpl_status = { [0] = "SC", [1] = "UR", [2] = "CRS", [4] = "CA" }

f.tlp_fmt_type = ProtoField.uint8("pcieoe.tlp.fmt_type", "Fmt/Type", base.HEX)
f.tlp_kind = ProtoField.string("pcieoe.tlp.kind", "TLP")
f.tlp_tc = ProtoField.uint8("pcieoe.tlp.tc", "Traffic class", base.DEC)
f.tlp_attr = ProtoField.uint8("pcieoe.tlp.attr", "Attributes", base.HEX)
f.tlp_ep = ProtoField.bool("pcieoe.tlp.poisoned", "Poisoned")
f.tlp_length = ProtoField.uint16("pcieoe.tlp.length", "Length (DW)", base.DEC)
f.tlp_requester = ProtoField.uint16("pcieoe.tlp.requester", "Requester ID", base.HEX)
f.tlp_completer = ProtoField.uint16("pcieoe.tlp.completer", "Completer ID", base.HEX)
f.tlp_tag = ProtoField.uint16("pcieoe.tlp.tag", "Tag", base.DEC)
f.tlp_first_be = ProtoField.uint8("pcieoe.tlp.first_be", "First DW BE", base.HEX)
f.tlp_last_be = ProtoField.uint8("pcieoe.tlp.last_be", "Last DW BE", base.HEX)
f.tlp_address = ProtoField.uint64("pcieoe.tlp.address", "Address", base.HEX)
f.tlp_register = ProtoField.uint16("pcieoe.tlp.register", "Register (DW)", base.DEC)
f.tlp_status = ProtoField.uint8("pcieoe.tlp.status", "Completion status", base.DEC, cpl_status)
f.tlp_byte_count = ProtoField.uint16("pcieoe.tlp.byte_count", "Byte count", base.DEC)
f.tlp_lower_address = ProtoField.uint8("pcieoe.tlp.lower_address", "Lower address", base.HEX)
f.tlp_msg_routing = ProtoField.uint8("pcieoe.tlp.msg_routing", "Message routing", base.DEC)
f.tlp_msg_code = ProtoField.uint8("pcieoe.tlp.msg_code", "Message code", base.HEX)
f.tlp_data = ProtoField.bytes("pcieoe.tlp.data", "Data")

local function dissect_tlp(tvb, tree)
  if tvb:len() < 12 then
    tree:add_expert_info(PI_MALFORMED, PI_ERROR, "TLP shorter than a 3 DW header")
    return
  end
  local raw = tvb(0, 1):uint()
  local kind_byte = raw
  if bit32.band(raw, 0xb8) == 0x30 then kind_byte = bit32.band(raw, 0xf8) end
  local kind = tlp_types[kind_byte] or string.format("unknown 0x%02x", raw)
  local b1 = tvb(1, 1):uint()
  local b2 = tvb(2, 1):uint()
  local length = bit32.bor(bit32.lshift(bit32.band(b2, 3), 8), tvb(3, 1):uint())
  if length == 0 then length = 1024 end
  local tag_hi = bit32.bor(bit32.lshift(bit32.band(b1, 0x80), 2), bit32.lshift(bit32.band(b1, 0x08), 5))
  local t = tree:add(pcieoe, tvb(), "TLP: " .. kind)
  t:add(f.tlp_fmt_type, tvb(0, 1))
  t:add(f.tlp_kind, kind)
  t:add(f.tlp_tc, bit32.band(bit32.rshift(b1, 4), 7))
  t:add(f.tlp_attr, bit32.bor(bit32.band(b1, 4), bit32.band(bit32.rshift(b2, 4), 3)))
  t:add(f.tlp_ep, bit32.band(b2, 0x40) ~= 0)
  local has_data = bit32.band(raw, 0x40) ~= 0
  local hdr = bit32.band(raw, 0x20) ~= 0 and 16 or 12
  if has_data or kind_byte == 0x00 or kind_byte == 0x20 then t:add(f.tlp_length, tvb(2, 2), length) end
  if kind_byte == 0x0a or kind_byte == 0x4a then
    local b6 = tvb(6, 1):uint()
    local bc = bit32.band(tvb(6, 2):uint(), 0xfff)
    if bc == 0 then bc = 4096 end
    t:add(f.tlp_completer, tvb(4, 2))
    t:add(f.tlp_status, tvb(6, 1), bit32.rshift(b6, 5))
    t:add(f.tlp_byte_count, tvb(6, 2), bc)
    t:add(f.tlp_requester, tvb(8, 2))
    t:add(f.tlp_tag, tvb(10, 1), tag_hi + tvb(10, 1):uint())
    t:add(f.tlp_lower_address, tvb(11, 1), bit32.band(tvb(11, 1):uint(), 0x7f))
  else
    if tvb:len() < hdr then
      t:add_expert_info(PI_MALFORMED, PI_ERROR, "TLP shorter than its header")
      return
    end
    t:add(f.tlp_requester, tvb(4, 2))
    t:add(f.tlp_tag, tvb(6, 1), tag_hi + tvb(6, 1):uint())
    if kind_byte == 0x30 or kind_byte == 0x70 then
      t:add(f.tlp_msg_routing, tvb(0, 1), bit32.band(raw, 7))
      t:add(f.tlp_msg_code, tvb(7, 1))
    else
      t:add(f.tlp_first_be, tvb(7, 1), bit32.band(tvb(7, 1):uint(), 0xf))
      t:add(f.tlp_last_be, tvb(7, 1), bit32.rshift(tvb(7, 1):uint(), 4))
      if bit32.band(kind_byte, 0x1e) == 0x04 then
        t:add(f.tlp_completer, tvb(8, 2))
        t:add(f.tlp_register, tvb(10, 2), bit32.bor(bit32.lshift(bit32.band(tvb(10, 1):uint(), 0xf), 6), bit32.rshift(tvb(11, 1):uint(), 2)))
      elseif hdr == 16 then
        local addr = tvb(8, 8):uint64()
        t:add(f.tlp_address, tvb(8, 8), addr - addr % 4)
      else
        t:add(f.tlp_address, tvb(8, 4), UInt64(bit32.band(tvb(8, 4):uint(), 0xfffffffc)))
      end
    end
  end
  if has_data and tvb:len() > hdr then t:add(f.tlp_data, tvb(hdr, math.min(length * 4, tvb:len() - hdr))) end
end

local mgmt_kinds = {
  [0x01] = "Solicit", [0x02] = "Announce", [0x03] = "Heartbeat", [0x10] = "FunctionReport", [0x11] = "SlotReport",
  [0x20] = "MapFunction", [0x21] = "UnmapFunction", [0x22] = "MapSlot", [0x23] = "UnmapSlot", [0x30] = "Ack",
}
local mgmt_roles = { [1] = "HI", [2] = "DI" }
local slot_states = { [0] = "free", [1] = "mapped", [2] = "releasing", [3] = "lost" }
local ack_status = { [0] = "ok", [1] = "unknown", [2] = "busy", [3] = "timeout", [4] = "failed" }
f.mgmt_kind = ProtoField.uint8("pcieoe.mgmt.kind", "Message", base.HEX, mgmt_kinds)
f.mgmt_id = ProtoField.uint16("pcieoe.mgmt.id", "Request id", base.DEC)
f.mgmt_role = ProtoField.uint8("pcieoe.mgmt.role", "Role", base.DEC, mgmt_roles)
f.mgmt_links = ProtoField.uint8("pcieoe.mgmt.links", "Links", base.DEC)
f.mgmt_count = ProtoField.uint8("pcieoe.mgmt.count", "Count (slots, functions or entries)", base.DEC)
f.mgmt_name = ProtoField.string("pcieoe.mgmt.name", "Name")
f.mgmt_function = ProtoField.uint8("pcieoe.mgmt.function", "Function index", base.DEC)
f.mgmt_vendor = ProtoField.uint16("pcieoe.mgmt.vendor", "Vendor ID", base.HEX)
f.mgmt_device = ProtoField.uint16("pcieoe.mgmt.device", "Device ID", base.HEX)
f.mgmt_class = ProtoField.uint24("pcieoe.mgmt.class", "Class code", base.HEX)
f.mgmt_slot = ProtoField.uint8("pcieoe.mgmt.slot", "Slot", base.DEC)
f.mgmt_state = ProtoField.uint8("pcieoe.mgmt.state", "Slot state", base.DEC, slot_states)
f.mgmt_channel = ProtoField.uint16("pcieoe.mgmt.channel", "Channel", base.DEC)
f.mgmt_bdf = ProtoField.uint16("pcieoe.mgmt.bdf", "BDF", base.HEX)
f.mgmt_timeout = ProtoField.uint16("pcieoe.mgmt.timeout_ms", "Release time limit (ms)", base.DEC)
f.mgmt_epoch = ProtoField.uint32("pcieoe.mgmt.epoch", "Station epoch", base.HEX)
f.mgmt_generation = ProtoField.uint16("pcieoe.mgmt.generation", "Report generation", base.DEC)
f.mgmt_link = ProtoField.uint8("pcieoe.mgmt.link", "Link", base.DEC)
f.mgmt_status = ProtoField.uint8("pcieoe.mgmt.status", "Status", base.DEC, ack_status)
f.mgmt_detail = ProtoField.string("pcieoe.mgmt.detail", "Detail")

-- A length-prefixed string at o; returns the offset after it (nil if it runs past the end).
local function mgmt_string(tvb, t, field, o)
  if o >= tvb:len() then return nil end
  local n = tvb(o, 1):uint()
  if o + 1 + n > tvb:len() then return nil end
  if n > 0 then t:add(field, tvb(o + 1, n)) else t:add(field, tvb(o, 1), "") end
  return o + 1 + n
end

-- Each kind's body, as management.ts lays it out; returns the kind's name.
local function dissect_mgmt(tvb, tree)
  if tvb:len() < 4 then
    tree:add_expert_info(PI_MALFORMED, PI_ERROR, "message shorter than its 4-byte header")
    return "?"
  end
  local kind = tvb(0, 1):uint()
  local name = mgmt_kinds[kind] or string.format("kind 0x%02x", kind)
  local t = tree:add(pcieoe, tvb(), "Message: " .. name)
  t:add(f.mgmt_kind, tvb(0, 1))
  t:add(f.mgmt_id, tvb(2, 2))
  local len = tvb:len()
  local need = { [0x20] = 9, [0x21] = 7, [0x22] = 9, [0x23] = 7, [0x02] = 7, [0x03] = 11, [0x10] = 5, [0x11] = 5, [0x30] = 5 }
  if need[kind] and len < need[kind] then
    t:add_expert_info(PI_MALFORMED, PI_ERROR, "message ends inside its body")
    return name
  end
  local o = 4
  if kind == 0x01 then
    o = mgmt_string(tvb, t, f.mgmt_name, 4)
  elseif kind == 0x02 then
    t:add(f.mgmt_role, tvb(4, 1))
    t:add(f.mgmt_links, tvb(5, 1))
    t:add(f.mgmt_count, tvb(6, 1))
    o = mgmt_string(tvb, t, f.mgmt_name, 7)
  elseif kind == 0x03 then
    t:add(f.mgmt_epoch, tvb(4, 4))
    t:add(f.mgmt_generation, tvb(8, 2))
    t:add(f.mgmt_link, tvb(10, 1))
  elseif kind == 0x10 then
    t:add(f.mgmt_count, tvb(4, 1))
    o = 5
    for _ = 1, tvb(4, 1):uint() do
      if not o or o + 12 > len then o = nil break end
      local e = t:add(pcieoe, tvb(o, 12), "Function " .. tvb(o, 1):uint())
      e:add(f.mgmt_function, tvb(o, 1))
      e:add(f.mgmt_vendor, tvb(o + 1, 2))
      e:add(f.mgmt_device, tvb(o + 3, 2))
      e:add(f.mgmt_class, tvb(o + 5, 3))
      e:add(f.mgmt_channel, tvb(o + 8, 2))
      e:add(f.mgmt_bdf, tvb(o + 10, 2))
      o = mgmt_string(tvb, e, f.mgmt_name, o + 12)
    end
  elseif kind == 0x11 then
    t:add(f.mgmt_count, tvb(4, 1))
    o = 5
    for _ = 1, tvb(4, 1):uint() do
      if o + 6 > len then o = nil break end
      local e = t:add(pcieoe, tvb(o, 6), "Slot " .. tvb(o, 1):uint())
      e:add(f.mgmt_slot, tvb(o, 1))
      e:add(f.mgmt_state, tvb(o + 1, 1))
      e:add(f.mgmt_channel, tvb(o + 2, 2))
      e:add(f.mgmt_bdf, tvb(o + 4, 2))
      o = o + 6
    end
  elseif kind == 0x20 or kind == 0x21 then
    t:add(f.mgmt_function, tvb(4, 1))
    t:add(f.mgmt_channel, tvb(5, 2))
    if kind == 0x20 then t:add(f.mgmt_bdf, tvb(7, 2)) end
  elseif kind == 0x22 then
    t:add(f.mgmt_slot, tvb(4, 1))
    t:add(f.mgmt_channel, tvb(5, 2))
    t:add(f.mgmt_bdf, tvb(7, 2))
  elseif kind == 0x23 then
    t:add(f.mgmt_slot, tvb(4, 1))
    t:add(f.mgmt_timeout, tvb(5, 2))
  elseif kind == 0x30 then
    t:add(f.mgmt_status, tvb(4, 1))
    o = mgmt_string(tvb, t, f.mgmt_detail, 5)
  end
  if not o then t:add_expert_info(PI_MALFORMED, PI_ERROR, "message ends inside its body") end
  return name
end

local HEADER = 24

function pcieoe.dissector(tvb, pinfo, tree)
  if tvb:len() < HEADER then return 0 end
  pinfo.cols.protocol = "PCIeOE"
  local vt = tvb(0, 1):uint()
  local ftype = bit32.band(vt, 0x0f)
  local plen = tvb(10, 2):uint()
  local t = tree:add(pcieoe, tvb(0, HEADER + math.min(plen, tvb:len() - HEADER)))
  t:add(f.version, tvb(0, 1))
  if bit32.rshift(vt, 4) ~= 2 then
    t:add_expert_info(PI_MALFORMED, PI_ERROR, "not PCIeOE version 2")
    return tvb:len()
  end
  t:add(f.type, tvb(0, 1))
  local fl = t:add(f.flags, tvb(1, 1))
  fl:add(f.flag_acknow, tvb(1, 1))
  fl:add(f.flag_replay, tvb(1, 1))
  fl:add(f.flag_probe_answer, tvb(1, 1))
  t:add(f.channel, tvb(2, 2))
  t:add(f.seq, tvb(4, 2))
  t:add(f.ack, tvb(6, 2))
  t:add(f.credits, tvb(8, 2))
  t:add(f.length, tvb(10, 2))
  t:add(f.crc, tvb(12, 4))
  t:add(f.epoch, tvb(16, 4))
  t:add(f.peer_epoch, tvb(20, 4))
  local info = string.format("%s ch=%d seq=%d ack=%d credits=%d", frame_types[ftype] or "?", tvb(2, 2):uint(), tvb(4, 2):uint(), tvb(6, 2):uint(), tvb(8, 2):uint())
  if plen > 0 and HEADER + plen <= tvb:len() then
    local payload = tvb(HEADER, plen)
    if ftype == 0 then
      dissect_tlp(payload:tvb(), t)
      info = info .. " " .. (tlp_types[payload(0, 1):uint()] or tlp_types[bit32.band(payload(0, 1):uint(), 0xf8)] or "")
    elseif ftype == 4 or ftype == 5 then
      info = info .. " " .. dissect_mgmt(payload:tvb(), t)
    else
      t:add(f.payload, payload)
    end
  elseif plen > 0 then
    t:add_expert_info(PI_MALFORMED, PI_ERROR, "payload length runs past the frame")
  end
  pinfo.cols.info = info
  return tvb:len()
end

DissectorTable.get("ethertype"):add(0x88b5, pcieoe)
