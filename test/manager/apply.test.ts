// The unassign path's lookup of a guest slot: the secondary bus the guest gave an HI
// downstream port, from QMP query-pci (shape as QEMU 11 answers it, trimmed).
import test from 'ava';
import { findSecondaryBus } from '../../src/manager/apply.ts';

const bridge = (qdev_id: string, secondary: number, devices: object[] = []) => ({ qdev_id, pci_bridge: { bus: { number: 0, secondary, subordinate: secondary }, devices } });
const reply = {
  return: [
    {
      bus: 0,
      devices: [
        { qdev_id: '' },
        bridge('hisw-port', 1, [bridge('hisw', 2, [bridge('hisw.0', 3, [{ qdev_id: 'eep0' }]), bridge('hisw.1', 4), bridge('hisw.2', 0)])]),
      ],
    },
  ],
};

test('the downstream port is found below the root port and the upstream port', (t) => {
  t.is(findSecondaryBus(reply, 'hisw.0'), 3);
  t.is(findSecondaryBus(reply, 'hisw.1'), 4);
});

test('a port the guest has not numbered yet (secondary 0), or an unknown id, gives undefined', (t) => {
  t.is(findSecondaryBus(reply, 'hisw.2'), undefined);
  t.is(findSecondaryBus(reply, 'hisw.9'), undefined);
  t.is(findSecondaryBus({}, 'hisw.0'), undefined);
});
