// NVMe completion status (NVMe 1.4 §4.6.1): what goes into CQE DW3 bits 31:17.
// A status is kept as one number, SCT << 8 | SC, so handlers can return it
// and the queue code packs it with the phase tag and DNR.

/** Status Code Type (bits 27:25 of DW3). */
export const enum Sct {
  Generic = 0,
  CommandSpecific = 1,
  MediaError = 2,
}

/** Status codes as SCT << 8 | SC. */
export const enum Status {
  Success = 0x000,
  InvalidOpcode = 0x001,
  InvalidField = 0x002,
  CommandIdConflict = 0x003,
  DataTransferError = 0x004,
  AbortedPowerLoss = 0x005,
  InternalError = 0x006,
  AbortRequested = 0x007,
  AbortedSqDeletion = 0x008,
  InvalidNamespace = 0x00b,
  CommandSequenceError = 0x00c,
  InvalidSglDescriptor = 0x00d,
  PrpOffsetInvalid = 0x013,
  LbaOutOfRange = 0x080,
  CapacityExceeded = 0x081,
  NamespaceNotReady = 0x082,

  CompletionQueueInvalid = 0x100,
  InvalidQueueId = 0x101,
  InvalidQueueSize = 0x102,
  AbortLimitExceeded = 0x103,
  AerLimitExceeded = 0x105,
  InvalidFirmwareSlot = 0x106,
  InvalidInterruptVector = 0x108,
  InvalidLogPage = 0x109,
  InvalidFormat = 0x10a,
  InvalidQueueDeletion = 0x10c,
  FeatureNotSaveable = 0x10d,
  FeatureNotChangeable = 0x10e,

  WriteFault = 0x280,
  UnrecoveredReadError = 0x281,
}

/** A command failed with an NVMe status; `dnr` = retrying the same command will fail again. */
export class NvmeError extends Error {
  constructor(
    readonly status: Status,
    message: string,
    readonly dnr = true,
  ) {
    super(message);
    this.name = 'NvmeError';
  }
}

/** Throws Invalid Field in Command (the most common refusal) with a reason for logs. */
export function invalidField(why: string): never {
  throw new NvmeError(Status.InvalidField, why);
}
