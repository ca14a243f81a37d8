// src/fabric — the PCIeOE fabric: tlp/ (transaction layer), link/ (data-link layer), wire/
// (frames and ports), switch/, and here the clocks and the PCIeOE port. It may import
// src/common and native/ only: the fabric knows no HI, DI, vfio-user, direct attach, manager or
// device model (npm run deps).

/** Public surface of the fabric: codecs, link layer, switch and its port plumbing. */
export * from './tlp/tlp.ts';
export * from './tlp/check.ts';
export * from './tlp/split.ts';
export * from './tlp/completion.ts';
export * from './tlp/byte-enables.ts';
export * from './wire/frame.ts';
export * from './wire/mac.ts';
export * from './link/seq.ts';
export * from './clock.ts';
export { SimClock } from './sim-clock.ts';
export { Channel, type ChannelOptions, type ChannelStats, type LinkBinding } from './link/channel.ts';
export { ReplayBuffer } from './link/replay-buffer.ts';
export { EthernetSwitch, type PortCounters, type SwitchOptions, type VlanMode } from './switch/switch.ts';
export { type PortTransport, type Station, inProcessPort } from './wire/port.ts';
export { FaultyPort, type FaultConfig, type FaultCounters, type Direction, NO_FAULTS } from './wire/faults.ts';
export { capturePort, type FrameSink } from './wire/capture.ts';
export { PcapWriter, readPcap, pcapGlobalHeader, pcapRecord, type PcapRecord } from './wire/pcap.ts';
export { UdpStation, UdpSwitchPort } from './wire/udp-port.ts';
export { seededRng, type Rng } from './rng.ts';
export type { Decoded } from './result.ts';
export { UnixDgramPort, type UnixDgramPortOptions, type UnixDgramCounters } from './wire/unix-dgram-port.ts';
export { SwitchControl, type ControlReply } from './switch/control.ts';
export { VxlanPort, VXLAN_PORT, vxlanHeader, type VxlanCounters, type VxlanEndpoint, type VxlanPortOptions } from './wire/vxlan-port.ts';
