// SVG plots of a benchmark run, drawn by Vega-Lite specs rendered headless by Vega (no
// browser, no canvas: the 'none' renderer and toSVG). One function per plot; each returns
// undefined when the run has no figures for it, so the report says "missing" instead.
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import type { Results } from '../lib/results.ts';
import { COEX_CASES, FAULT_PATHS, NIC_PATHS, NVME_PATHS, NVME_WORKLOADS, QD1_WORKLOAD, faulted, ioFigures, nicFigures, pathLabel } from './markdown.ts';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

type Encoding = Extract<TopLevelSpec, { mark: unknown }>['encoding'];

/** Bars in one panel per value of `column`, each panel with its own y scale unless `sharedY`. */
function panels(title: string, values: object[], column: string, width: number, encoding: Encoding, sharedY = false): Promise<string> {
  return renderSvg({
    title,
    data: { values },
    facet: { column: { field: column, type: 'nominal', sort: null, title: null } },
    spec: { width, height: 200, mark: 'bar', encoding },
    resolve: { scale: { y: sharedY ? 'shared' : 'independent' } },
  });
}

/** Paths in table order for the colour legend: the known ones first. */
const pathDomain = (labels: string[]) => [...new Set([...NVME_PATHS.filter((p) => labels.includes(p)), ...labels])];

/** IOPS per workload (one panel each, its own scale: 64 KiB runs have far fewer IOPS) and path, without faults (faultsPlot has those). */
export async function iopsPlot(r: Results): Promise<string | undefined> {
  const values = ioFigures(r, 'nvme').filter((f) => f.workload !== QD1_WORKLOAD && !faulted(f)).map((f) => ({ workload: f.workload, path: pathLabel(f), iops: Math.round(f.iops) }));
  if (!values.length) return undefined;
  const domain = pathDomain(values.map((v) => v.path));
  return panels('NVMe IOPS per workload and path', values, 'workload', 130, {
    x: { field: 'path', type: 'nominal', sort: domain, axis: { title: null, labelAngle: -40 } },
    y: { field: 'iops', type: 'quantitative', title: 'IOPS' },
    color: { field: 'path', type: 'nominal', scale: { domain }, legend: null },
  });
}

/** PCIeOE IOPS under each fault as a share of PCIeOE without faults, per workload (QD 1 included). */
export async function faultsPlot(r: Results): Promise<string | undefined> {
  const figs = ioFigures(r, 'nvme').filter((f) => f.path === 'PCIeOE');
  const clean = new Map(figs.filter((f) => !faulted(f)).map((f) => [f.workload, f.iops]));
  const values = figs.flatMap((f) => {
    const base = clean.get(f.workload);
    return faulted(f) && base ? [{ workload: f.workload, fault: pathLabel(f).slice('PCIeOE '.length), percent: Math.round((f.iops / base) * 100) }] : [];
  });
  if (!values.length) return undefined;
  const faults = FAULT_PATHS.map((p) => p.slice('PCIeOE '.length));
  return groupedBars('PCIeOE IOPS under faults, % of PCIeOE without', values, { field: 'workload', sort: [...NVME_WORKLOADS, QD1_WORKLOAD] }, { field: 'fault', sort: faults }, { field: 'percent', title: '% of fault-free IOPS' }, 640);
}

/** QD 1 4 KiB random read: mean and p99 latency per path. */
export async function qd1Plot(r: Results): Promise<string | undefined> {
  const figs = ioFigures(r, 'nvme').filter((f) => f.workload === QD1_WORKLOAD);
  const values = figs.flatMap((f) => [
    { path: pathLabel(f), stat: 'mean', us: Math.round(f.meanUs) },
    { path: pathLabel(f), stat: 'p99', us: Math.round(f.p99Us) },
  ]);
  if (!values.length) return undefined;
  return renderSvg({
    title: 'QD 1 randread 4 KiB latency',
    data: { values },
    width: 300,
    height: 200,
    mark: 'bar',
    encoding: {
      x: { field: 'path', type: 'nominal', sort: pathDomain(values.map((v) => v.path)), axis: { labelAngle: 0 } },
      xOffset: { field: 'stat', type: 'nominal' },
      y: { field: 'us', type: 'quantitative', title: 'µs' },
      color: { field: 'stat', type: 'nominal', title: null },
    },
  });
}

/** CPU µs per I/O, stacked by process, per path, one panel per workload. */
export async function cpuPlot(r: Results): Promise<string | undefined> {
  const values = r.figures.flatMap((f) => (f.kind === 'cpu-per-io' ? [{ workload: f.workload, path: f.path, process: f.process, us: f.us }] : []));
  if (!values.length) return undefined;
  return panels('CPU µs per I/O, by process', values, 'workload', 110, {
    x: { field: 'path', type: 'nominal', sort: pathDomain(values.map((v) => v.path)), axis: { title: null, labelAngle: -40 } },
    y: { field: 'us', type: 'quantitative', title: 'CPU µs per I/O', stack: 'zero' },
    color: { field: 'process', type: 'nominal' },
  });
}

/** Fabric throughput per link count and transport, one panel per CPU placement (unshaped links). */
export async function fabricPlot(r: Results): Promise<string | undefined> {
  const values = r.figures.flatMap((f) => (f.kind === 'throughput' && !f.shapedGbps ? [{ placement: f.placement, transport: f.transport, links: `${f.links} link${f.links > 1 ? 's' : ''}`, gbps: f.gbps }] : []));
  if (!values.length) return undefined;
  return panels('Fabric throughput (4 KiB payloads)', values, 'placement', 160, {
    x: { field: 'transport', type: 'nominal', axis: { title: null, labelAngle: -30 } },
    xOffset: { field: 'links', type: 'nominal' },
    y: { field: 'gbps', type: 'quantitative', title: 'Gb/s' },
    color: { field: 'links', type: 'nominal', title: null },
  }, true);
}

/** Bars of `y` per value of `x`, side by side per value of `group` (its colour). */
function groupedBars(title: string, values: object[], x: { field: string; sort?: string[] }, group: { field: string; sort?: string[] }, y: { field: string; title: string }, width = 300): Promise<string> {
  return renderSvg({
    title,
    data: { values },
    width,
    height: 200,
    mark: 'bar',
    encoding: {
      x: { field: x.field, type: 'nominal', ...(x.sort ? { sort: x.sort } : {}), axis: { title: null, labelAngle: 0 } },
      xOffset: { field: group.field, type: 'nominal', ...(group.sort ? { sort: group.sort } : {}) },
      y: { field: y.field, type: 'quantitative', title: y.title },
      color: { field: group.field, type: 'nominal', ...(group.sort ? { sort: group.sort } : {}), title: null },
    },
  });
}

/** iperf3 TCP throughput per NIC path, both directions side by side. */
export async function nicPlot(r: Results): Promise<string | undefined> {
  const values = nicFigures(r).flatMap((f) => [
    { path: f.path, direction: 'A -> B', mbps: f.aToBMbps },
    { path: f.path, direction: 'B -> A', mbps: f.bToAMbps },
  ]);
  if (!values.length) return undefined;
  return groupedBars('iperf3 TCP throughput per NIC path', values, { field: 'path', sort: [...NIC_PATHS] }, { field: 'direction' }, { field: 'mbps', title: 'Mb/s' });
}

/** NVMe IOPS over PCIeOE per host, alone and while iperf3 crosses the same switch. */
export async function coexistencePlot(r: Results): Promise<string | undefined> {
  const figs = ioFigures(r, 'nic');
  const values = figs.map((f) => {
    const c = COEX_CASES.find((x) => f.path.endsWith(` ${x}`)) ?? f.path;
    return { host: f.path.slice(0, f.path.length - c.length - 1), case: c, iops: Math.round(f.iops) };
  });
  if (!values.length) return undefined;
  return groupedBars(`NVMe ${figs[0]!.workload} IOPS over PCIeOE, alone and under iperf3`, values, { field: 'host' }, { field: 'case', sort: [...COEX_CASES] }, { field: 'iops', title: 'IOPS' }, 240);
}
