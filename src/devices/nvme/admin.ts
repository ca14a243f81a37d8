// Admin command set (NVMe 1.4 §5): what the Linux driver, nvme-cli and
// hwmon send. Anything else is Invalid Command Opcode; unsupported variants
// of supported commands are Invalid Field with DNR, so the host does not retry.
import { activeNsList, Cns, type ControllerIdentity, ERROR_LOG_ENTRIES, identifyController, identifyNamespace, nsDescriptors, WCTEMP } from './identify.ts';
import type { Namespace } from './namespace.ts';
import { writeToHost, type HostMemory } from './prp.ts';
import { CompletionQueue, SubmissionQueue, type Completion, type Sqe } from './queues.ts';
import { LIMITS } from './registers.ts';
import { invalidField, NvmeError, Status } from './status.ts';

export const enum AdminOpcode {
  DeleteIoSq = 0x00,
  CreateIoSq = 0x01,
  GetLogPage = 0x02,
  DeleteIoCq = 0x04,
  CreateIoCq = 0x05,
  Identify = 0x06,
  Abort = 0x08,
  SetFeatures = 0x09,
  GetFeatures = 0x0a,
  AsyncEventRequest = 0x0c,
  DoorbellBufferConfig = 0x7c,
}

export const enum FeatureId {
  Arbitration = 0x01,
  PowerManagement = 0x02,
  TemperatureThreshold = 0x04,
  VolatileWriteCache = 0x06,
  NumberOfQueues = 0x07,
  InterruptCoalescing = 0x08,
  InterruptVectorConfig = 0x09,
  WriteAtomicity = 0x0a,
  AsyncEventConfig = 0x0b,
}

export const enum LogPage {
  Error = 0x01,
  Smart = 0x02,
  FirmwareSlot = 0x03,
}

/** Composite temperature the SMART log reports, Kelvin (35 °C). */
const TEMPERATURE = 308;
const LOG_PAGE_SIZE = 512;
const ERROR_ENTRY_SIZE = 64;

/** Feature values; `numQueues` holds the allocated counts, 0-based. */
export class Features {
  arbitration = 0;
  powerState = 0;
  tempOver = WCTEMP;
  tempUnder = 0;
  writeCache = true;
  numQueues = { sq: LIMITS.ioQueues - 1, cq: LIMITS.ioQueues - 1 };
  interruptCoalescing = 0;
  writeAtomicity = 0;
  asyncEventConfig = 0;
  /** Coalescing Disable per vector (Interrupt Vector Configuration). */
  readonly vectorConfig = new Map<number, number>();
}

/** One Error Information log entry (NVMe 1.4 Figure 194), as the controller records it. */
export interface ErrorRecord {
  /** Error Count: 1, 2, ... over the controller's life (0 marks an unused entry). */
  count: number;
  sqid: number;
  cid: number;
  /** SCT << 8 | SC. */
  status: number;
  dnr: boolean;
  nsid: number;
  lba: number;
}

/** The Error Information log page: newest first, unused entries zero. */
export function errorLog(records: readonly ErrorRecord[]): Uint8Array {
  const b = new Uint8Array(ERROR_LOG_ENTRIES * ERROR_ENTRY_SIZE);
  const v = new DataView(b.buffer);
  records.slice(0, ERROR_LOG_ENTRIES).forEach((r, i) => {
    const at = i * ERROR_ENTRY_SIZE;
    v.setBigUint64(at, BigInt(r.count), true);
    v.setUint16(at + 8, r.sqid, true);
    v.setUint16(at + 10, r.cid, true);
    v.setUint16(at + 12, ((r.status & 0x7ff) << 1) | (r.dnr ? 0x8000 : 0), true); // status field, phase bit 0
    v.setUint16(at + 14, 0xffff, true); // parameter error location: not reported
    v.setBigUint64(at + 16, BigInt(r.lba), true);
    v.setUint32(at + 24, r.nsid, true);
  });
  return b;
}

/** What admin commands reach in the controller. */
export interface AdminHost {
  readonly identity: ControllerIdentity;
  readonly namespaces: ReadonlyMap<number, Namespace>;
  readonly features: Features;
  readonly sqs: Map<number, SubmissionQueue>;
  readonly cqs: Map<number, CompletionQueue>;
  readonly mem: HostMemory;
  /** CC.MPS as bytes. */
  readonly pageSize: number;
  readonly msixVectors: number;
  /** For the SMART and error logs. */
  readonly powerOnHours: number;
  /** Newest first, at most ERROR_LOG_ENTRIES. */
  readonly errors: readonly ErrorRecord[];
  readonly unsafeShutdowns: number;
  /** Asynchronous Event Requests outstanding. */
  aerCount: number;
  /** Resolves when an asynchronous event completes this AER (never, today: no events are generated). */
  waitForEvent(): Promise<Completion>;
  /** Doorbell Buffer Config: shadow doorbells and event indexes at these page-aligned bus addresses; settles once both are in step with the queues. */
  useDoorbellBuffer(shadow: number, eventIdx: number): Promise<void>;
}

const ok = (dw0 = 0): Completion => ({ dw0, status: Status.Success, dnr: false });

export function executeAdmin(host: AdminHost, sqe: Sqe): Completion | Promise<Completion> {
  switch (sqe.opcode) {
    case AdminOpcode.Identify:
      return identify(host, sqe);
    case AdminOpcode.GetLogPage:
      return getLogPage(host, sqe);
    case AdminOpcode.SetFeatures:
      return ok(setFeature(host, sqe));
    case AdminOpcode.GetFeatures:
      return ok(getFeature(host, sqe));
    case AdminOpcode.CreateIoCq:
      return ok(createCq(host, sqe));
    case AdminOpcode.CreateIoSq:
      return ok(createSq(host, sqe));
    case AdminOpcode.DeleteIoSq:
      return deleteSq(host, sqe);
    case AdminOpcode.DeleteIoCq:
      return ok(deleteCq(host, sqe));
    case AdminOpcode.Abort:
      // Commands run to completion as soon as they are fetched: nothing is ever
      // found waiting to be aborted. DW0 bit 0 = 1 says "not aborted".
      return ok(1);
    case AdminOpcode.DoorbellBufferConfig: {
      // PRP1: the shadow doorbells, PRP2: the event indexes, one page each, laid out as the doorbell registers.
      const { prp1, prp2 } = sqe;
      if (prp1 === 0 || prp2 === 0 || prp1 % host.pageSize !== 0 || prp2 % host.pageSize !== 0) {
        invalidField(`Doorbell Buffer Config: buffers 0x${prp1.toString(16)}, 0x${prp2.toString(16)} are not page aligned`);
      }
      // Completed only once the buffers are in step with the queues: the host submits as soon as it sees this completion.
      return host.useDoorbellBuffer(prp1, prp2).then(() => ok());
    }
    case AdminOpcode.AsyncEventRequest:
      if (host.aerCount >= 4) throw new NvmeError(Status.AerLimitExceeded, 'more AERs than AERL + 1');
      host.aerCount++;
      return host.waitForEvent();
    default:
      throw new NvmeError(Status.InvalidOpcode, `admin opcode 0x${sqe.opcode.toString(16)}`);
  }
}

async function toHost(host: AdminHost, sqe: Sqe, data: Uint8Array): Promise<Completion> {
  await writeToHost(host.mem, { prp1: sqe.prp1, prp2: sqe.prp2, pageSize: host.pageSize }, data);
  return ok();
}

function identify(host: AdminHost, sqe: Sqe): Promise<Completion> {
  const cns = sqe.dw(10) & 0xff;
  const nsid = sqe.nsid;
  const { subnqn, nn } = host.identity;
  switch (cns) {
    case Cns.Controller:
      return toHost(host, sqe, identifyController(host.identity));
    case Cns.Namespace: {
      if (nsid === 0 || nsid > nn) throw new NvmeError(Status.InvalidNamespace, `Identify Namespace: NSID 0x${nsid.toString(16)}`);
      const ns = host.namespaces.get(nsid);
      // A valid but inactive NSID gets a zero-filled structure.
      return toHost(host, sqe, ns ? identifyNamespace(ns, subnqn) : new Uint8Array(4096));
    }
    case Cns.ActiveNsList:
      if (nsid >= 0xffff_fffe) throw new NvmeError(Status.InvalidNamespace, `active NS list after 0x${nsid.toString(16)}`);
      return toHost(host, sqe, activeNsList([...host.namespaces.keys()], nsid));
    case Cns.NsDescriptors:
      if (!host.namespaces.has(nsid)) throw new NvmeError(Status.InvalidNamespace, `NS descriptors of inactive NSID ${nsid}`);
      return toHost(host, sqe, nsDescriptors(subnqn, nsid));
    default:
      invalidField(`Identify CNS 0x${cns.toString(16)} is not supported`);
  }
}

// ---- features -----------------------------------------------------------------

const CHANGEABLE = new Set<number>([
  FeatureId.Arbitration,
  FeatureId.PowerManagement,
  FeatureId.TemperatureThreshold,
  FeatureId.VolatileWriteCache,
  FeatureId.NumberOfQueues,
  FeatureId.InterruptCoalescing,
  FeatureId.InterruptVectorConfig,
  FeatureId.WriteAtomicity,
  FeatureId.AsyncEventConfig,
]);

/** The temperature threshold a CDW11 selects (composite sensor only). */
function thresholdSelect(dw11: number): 'over' | 'under' {
  const tmpsel = (dw11 >>> 16) & 0xf;
  const thsel = (dw11 >>> 20) & 0x3;
  if (tmpsel !== 0 || thsel > 1) invalidField(`temperature threshold TMPSEL ${tmpsel} THSEL ${thsel}: only the composite sensor exists`);
  return thsel === 0 ? 'over' : 'under';
}

function setFeature(host: AdminHost, sqe: Sqe): number {
  const dw10 = sqe.dw(10);
  const dw11 = sqe.dw(11);
  const fid = dw10 & 0xff;
  const f = host.features;
  if (!CHANGEABLE.has(fid)) invalidField(`Set Features FID 0x${fid.toString(16)}`);
  if (dw10 & 0x8000_0000) throw new NvmeError(Status.FeatureNotSaveable, 'Set Features with SV: nothing is saveable');
  switch (fid) {
    case FeatureId.Arbitration:
      f.arbitration = dw11;
      return 0;
    case FeatureId.PowerManagement:
      if ((dw11 & 0x1f) !== 0) invalidField(`power state ${dw11 & 0x1f}: only state 0 exists`);
      f.powerState = 0;
      return 0;
    case FeatureId.TemperatureThreshold:
      if (thresholdSelect(dw11) === 'over') f.tempOver = dw11 & 0xffff;
      else f.tempUnder = dw11 & 0xffff;
      return 0;
    case FeatureId.VolatileWriteCache:
      f.writeCache = (dw11 & 1) !== 0;
      return 0;
    case FeatureId.NumberOfQueues: {
      const nsqr = dw11 & 0xffff;
      const ncqr = dw11 >>> 16;
      if (nsqr === 0xffff || ncqr === 0xffff) invalidField('Number of Queues: 65535 requested');
      // Allowed only while no I/O queue exists (the allocation sizes them).
      if (host.sqs.size > 1 || host.cqs.size > 1) throw new NvmeError(Status.CommandSequenceError, 'Number of Queues after I/O queues were created');
      f.numQueues = { sq: Math.min(nsqr, LIMITS.ioQueues - 1), cq: Math.min(ncqr, LIMITS.ioQueues - 1) };
      return (f.numQueues.cq << 16) | f.numQueues.sq;
    }
    case FeatureId.InterruptCoalescing:
      // TIME (15:8, 100 µs units) and THR (7:0, 0-based): see interrupts.ts.
      f.interruptCoalescing = dw11 & 0xffff;
      return 0;
    case FeatureId.InterruptVectorConfig: {
      const iv = dw11 & 0xffff;
      if (iv >= host.msixVectors) invalidField(`interrupt vector ${iv}`);
      f.vectorConfig.set(iv, dw11 & 0x1_0000);
      return 0;
    }
    case FeatureId.WriteAtomicity:
      f.writeAtomicity = dw11 & 1;
      return 0;
    case FeatureId.AsyncEventConfig:
      f.asyncEventConfig = dw11;
      return 0;
  }
  return 0;
}

function getFeature(host: AdminHost, sqe: Sqe): number {
  const dw10 = sqe.dw(10);
  const dw11 = sqe.dw(11);
  const fid = dw10 & 0xff;
  const sel = (dw10 >>> 8) & 0x7;
  if (!CHANGEABLE.has(fid)) invalidField(`Get Features FID 0x${fid.toString(16)}`);
  if (sel === 3) return 0b100; // supported capabilities: changeable, not saveable, not per namespace
  if (sel > 3) invalidField(`Get Features SEL ${sel}`);
  // Nothing is saveable, so "saved" (2) reads as default (1).
  const f = sel === 0 ? host.features : new Features();
  switch (fid) {
    case FeatureId.Arbitration:
      return f.arbitration;
    case FeatureId.PowerManagement:
      return f.powerState;
    case FeatureId.TemperatureThreshold:
      return thresholdSelect(dw11) === 'over' ? f.tempOver : f.tempUnder;
    case FeatureId.VolatileWriteCache:
      return f.writeCache ? 1 : 0;
    case FeatureId.NumberOfQueues:
      return (f.numQueues.cq << 16) | f.numQueues.sq;
    case FeatureId.InterruptCoalescing:
      return f.interruptCoalescing;
    case FeatureId.InterruptVectorConfig: {
      const iv = dw11 & 0xffff;
      if (iv >= host.msixVectors) invalidField(`interrupt vector ${iv}`);
      return iv | (f.vectorConfig.get(iv) ?? 0);
    }
    case FeatureId.WriteAtomicity:
      return f.writeAtomicity;
    case FeatureId.AsyncEventConfig:
      return f.asyncEventConfig;
  }
  return 0;
}

// ---- log pages ----------------------------------------------------------------

function put128(v: DataView, at: number, x: number): void {
  v.setBigUint64(at, BigInt(Math.floor(x)), true); // upper 64 bits stay 0 at our scale
}

function smartLog(host: AdminHost): Uint8Array {
  const b = new Uint8Array(LOG_PAGE_SIZE);
  const v = new DataView(b.buffer);
  const t = { bytesRead: 0, bytesWritten: 0, reads: 0, writes: 0 };
  for (const ns of host.namespaces.values()) for (const k of Object.keys(t) as (keyof typeof t)[]) t[k] += ns.stats[k];
  b[0] = TEMPERATURE >= host.features.tempOver || TEMPERATURE < host.features.tempUnder ? 0x02 : 0; // critical warning: temperature
  v.setUint16(1, TEMPERATURE, true);
  b[3] = 100; // available spare %
  b[4] = 10; // spare threshold %
  b[5] = 0; // percentage used
  // Data units are thousands of 512-byte units, rounded up.
  put128(v, 32, Math.ceil(t.bytesRead / 512_000));
  put128(v, 48, Math.ceil(t.bytesWritten / 512_000));
  put128(v, 64, t.reads);
  put128(v, 80, t.writes);
  put128(v, 128, 1); // power cycles
  put128(v, 128 + 16, host.powerOnHours);
  put128(v, 128 + 32, host.unsafeShutdowns);
  put128(v, 128 + 64, host.errors[0]?.count ?? 0); // error log entries over the controller's life
  v.setUint16(200, TEMPERATURE, true); // temperature sensor 1
  return b;
}

function firmwareSlotLog(host: AdminHost): Uint8Array {
  const b = new Uint8Array(LOG_PAGE_SIZE);
  b[0] = 1; // AFI: slot 1 active
  for (let i = 0; i < 8; i++) b[8 + i] = host.identity.firmware.charCodeAt(i) || 0x20;
  return b;
}

function getLogPage(host: AdminHost, sqe: Sqe): Promise<Completion> {
  const dw10 = sqe.dw(10);
  const lid = dw10 & 0xff;
  const numd = ((sqe.dw(11) & 0xffff) * 0x1_0000 + (dw10 >>> 16) + 1) * 4;
  const offset = sqe.dw(12) + sqe.dw(13) * 0x1_0000_0000;
  let page: Uint8Array;
  switch (lid) {
    case LogPage.Error:
      page = errorLog(host.errors);
      break;
    case LogPage.Smart:
      page = smartLog(host);
      break;
    case LogPage.FirmwareSlot:
      page = firmwareSlotLog(host);
      break;
    default:
      throw new NvmeError(Status.InvalidLogPage, `log page 0x${lid.toString(16)}`);
  }
  if (offset % 4 !== 0 || offset >= page.length) invalidField(`log page offset ${offset}`);
  if (numd > (1 << LIMITS.mdts) * host.pageSize) invalidField(`log page of ${numd} bytes exceeds MDTS`);
  const out = new Uint8Array(numd);
  out.set(page.subarray(offset, offset + numd));
  return toHost(host, sqe, out);
}

// ---- queues -------------------------------------------------------------------

function queueGeometry(host: AdminHost, sqe: Sqe, max: number): { qid: number; size: number } {
  const dw10 = sqe.dw(10);
  const qid = dw10 & 0xffff;
  const size = (dw10 >>> 16) + 1;
  if (qid === 0 || qid > max + 1) throw new NvmeError(Status.InvalidQueueId, `queue id ${qid} (allocated ${max + 1})`);
  if (size < 2 || size > LIMITS.mqes + 1) throw new NvmeError(Status.InvalidQueueSize, `queue size ${size}`);
  if ((sqe.dw(11) & 1) === 0) invalidField('queue not physically contiguous (CAP.CQR = 1)');
  if (sqe.prp1 % host.pageSize !== 0) throw new NvmeError(Status.PrpOffsetInvalid, `queue base 0x${sqe.prp1.toString(16)} is not page aligned`);
  return { qid, size };
}

function createCq(host: AdminHost, sqe: Sqe): number {
  const { qid, size } = queueGeometry(host, sqe, host.features.numQueues.cq);
  if (host.cqs.has(qid)) throw new NvmeError(Status.InvalidQueueId, `CQ ${qid} exists`);
  const dw11 = sqe.dw(11);
  const vector = dw11 >>> 16;
  if (vector >= Math.max(host.msixVectors, 1)) throw new NvmeError(Status.InvalidInterruptVector, `vector ${vector}`);
  host.cqs.set(qid, new CompletionQueue(qid, sqe.prp1, size, vector, (dw11 & 2) !== 0));
  return 0;
}

function createSq(host: AdminHost, sqe: Sqe): number {
  const dw10 = sqe.dw(10);
  const qid = dw10 & 0xffff;
  if (qid !== 0 && host.sqs.has(qid)) throw new NvmeError(Status.InvalidQueueId, `SQ ${qid} exists`);
  const cqid = sqe.dw(11) >>> 16;
  const cq = cqid === 0 ? undefined : host.cqs.get(cqid);
  if (!cq) throw new NvmeError(Status.CompletionQueueInvalid, `CQ ${cqid} does not exist`);
  const { size } = queueGeometry(host, sqe, host.features.numQueues.sq);
  host.sqs.set(qid, new SubmissionQueue(qid, sqe.prp1, size, cq));
  cq.sqs.add(qid);
  return 0;
}

async function deleteSq(host: AdminHost, sqe: Sqe): Promise<Completion> {
  const qid = sqe.dw(10) & 0xffff;
  const sq = host.sqs.get(qid);
  if (qid === 0 || !sq) throw new NvmeError(Status.InvalidQueueId, `SQ ${qid} does not exist`);
  // Stop fetching; commands already fetched complete normally (before this one).
  sq.deleted = true;
  host.sqs.delete(qid);
  await sq.idle();
  sq.cq.sqs.delete(qid);
  return ok();
}

function deleteCq(host: AdminHost, sqe: Sqe): number {
  const qid = sqe.dw(10) & 0xffff;
  const cq = host.cqs.get(qid);
  if (qid === 0 || !cq) throw new NvmeError(Status.InvalidQueueId, `CQ ${qid} does not exist`);
  if (cq.sqs.size > 0) throw new NvmeError(Status.InvalidQueueDeletion, `CQ ${qid} still has SQs ${[...cq.sqs].join(', ')}`);
  host.cqs.delete(qid);
  cq.abandon();
  return 0;
}
