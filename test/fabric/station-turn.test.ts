// A station hands the frames of one event-loop turn to its port together (one flush),
// including those sent from promise continuations, in the order they were sent.
import test from 'ava';
import { stationOf } from '../../src/fabric/link/node.ts';
import type { PortTransport } from '../../src/fabric/wire/port.ts';

function recordingPort(): PortTransport & { sent: string[]; closed: boolean } {
  const port = {
    sent: [] as string[],
    closed: false,
    transmit(frame: Buffer) {
      port.sent.push(frame.toString());
    },
    attach() {},
    close() {
      port.closed = true;
    },
  };
  return port;
}

test('frames sent across promise continuations of one turn reach the port together, in order, at the turn\'s end', async (t) => {
  const port = recordingPort();
  const station = stationOf(port);
  station.send(Buffer.from('data'));
  await Promise.resolve();
  station.send(Buffer.from('cqe'));
  await Promise.resolve();
  station.send(Buffer.from('msi'));
  t.deepEqual(port.sent, [], 'nothing before the end of the turn');
  await new Promise((r) => setImmediate(r));
  t.deepEqual(port.sent, ['data', 'cqe', 'msi']);
  station.send(Buffer.from('next'));
  await new Promise((r) => setImmediate(r));
  t.deepEqual(port.sent, ['data', 'cqe', 'msi', 'next']);
});

test('closing a station hands over what it holds before the port closes; later sends go nowhere', async (t) => {
  const port = recordingPort();
  const station = stationOf(port);
  station.send(Buffer.from('last'));
  station.close();
  t.deepEqual(port.sent, ['last']);
  t.true(port.closed);
  station.send(Buffer.from('late'));
  await new Promise((r) => setImmediate(r));
  t.deepEqual(port.sent, ['last']);
});
