/**
 * The DI's FunctionReport for the manager (wire/management.ts): each function's index, name,
 * vendor, device and class code as its config space has them, and the host holding it (its
 * channel and the BDF it addresses the function as; channel 0: nobody).
 */

import { MgmtKind, type FunctionReport } from '../fabric/wire/management.ts';
import { Cfg } from '../pci/config-space.ts';
import type { DeviceInterface } from './di.ts';

export function functionReport(di: DeviceInterface, names: readonly string[]): Omit<FunctionReport, 'id'> {
  return {
    kind: MgmtKind.FunctionReport,
    functions: names.flatMap((name, index) => {
      const fn = di.function(name);
      if (!fn) return [];
      const held = di.assignmentOf(name);
      return [{
        index,
        name,
        vendor: fn.config.get16(Cfg.VendorId),
        device: fn.config.get16(Cfg.DeviceId),
        // Class code: the three bytes above the revision id.
        classCode: fn.config.get32(Cfg.Revision) >>> 8,
        holderChannel: held?.channel ?? 0,
        holderBdf: held?.hostBdf ?? 0,
      }];
    }),
  };
}
