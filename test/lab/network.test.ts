// Guests' own NICs (virtio-net) on the lab's userspace Ethernet switch: real traffic between
// two guests, counted by the switch's ports.
import test from 'ava';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { TestLab } from '../support/lab-harness.ts';

const lab = new TestLab('net');
test.after.always(() => lab.dispose());

function control(path: string, request: object): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    s.on('error', reject);
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) {
        s.end();
        resolve(JSON.parse(buf.slice(0, buf.indexOf('\n'))));
      }
    });
    s.write(JSON.stringify(request) + '\n');
  });
}

test.serial('two guests reach each other through the lab switch: iperf3 and switch counters', async (t) => {
  const up = await lab.run(['up', 'two-hosts-net']);
  t.is(up.code, 0, up.stderr);
  t.regex((await lab.exec('host-a', 'ip -br addr')).stdout, /UP\s+10\.99\.0\.1\/24/);
  const ping = await lab.exec('host-a', 'ping -c 3 -W 5 10.99.0.2');
  t.is(ping.code, 0, ping.stdout + ping.stderr);
  t.regex(ping.stdout, /3 packets transmitted, 3 received/);

  t.is((await lab.exec('host-b', 'iperf3 -s -D -1')).code, 0);
  const client = await lab.exec('host-a', 'iperf3 -c 10.99.0.2 -t 2 -J', 120);
  t.is(client.code, 0, client.stderr);
  const result = JSON.parse(client.stdout);
  t.true(result.end.sum_received.bytes > 100_000, `received ${result.end.sum_received.bytes} bytes`);

  const reply = await control(join(lab.stateDir, 'sockets', 'sw', 'control.sock'), { counters: true });
  t.true(reply.ok);
  for (const port of ['a', 'b']) {
    t.true(reply.ports[port].switch.rxFrames > 50, `port ${port} received frames`);
    t.true(reply.ports[port].switch.txFrames > 50, `port ${port} sent frames`);
  }
  t.is((await lab.run(['down'])).code, 0);
});
