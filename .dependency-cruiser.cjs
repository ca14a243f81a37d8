// Dependency directions (`npm run deps`, part of `npm test`): the folder rules of README.md
// "Structure". Each rule names what a folder must not import; src/common imports nothing of ours.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'common-imports-nothing-of-ours',
      comment: 'src/common holds shared helpers: it may use Node and the native addon, nothing else of the lab',
      severity: 'error',
      from: { path: '^src/common/' },
      to: { path: '^src/(?!common/)' },
    },
    {
      name: 'pci-imports-only-common',
      comment: 'src/pci is the PCI vocabulary: it may import only src/common',
      severity: 'error',
      from: { path: '^src/pci/' },
      to: { path: '^(src/(?!pci/|common/)|native/)' },
    },
    {
      name: 'devices-know-no-transport',
      comment: 'device models know no transport: no vfio-user, fabric, HI, DI, direct attach, manager or lab',
      severity: 'error',
      from: { path: '^src/devices/' },
      to: { path: '^src/(vfio-user|fabric|hi|di|direct-attach|manager|lab)/' },
    },
    {
      name: 'fabric-knows-no-hosts-or-devices',
      comment: 'the fabric carries TLPs: it knows no HI, DI, vfio-user, direct attach, manager or device model',
      severity: 'error',
      from: { path: '^src/fabric/' },
      to: { path: '^src/(hi|di|vfio-user|direct-attach|manager|lab|devices)/' },
    },
    {
      name: 'fabric-layers-tlp',
      comment: 'the transaction layer sits on no particular link, wire or switch',
      severity: 'error',
      from: { path: '^src/fabric/tlp/' },
      to: { path: '^src/fabric/(link|wire|switch)/' },
    },
    {
      name: 'fabric-layers-link',
      comment: 'the link layer carries TLPs as bytes over wires: it knows no TLP and no switch',
      severity: 'error',
      from: { path: '^src/fabric/link/' },
      to: { path: '^src/fabric/(tlp|switch)/' },
    },
    {
      name: 'fabric-layers-wire',
      comment: 'frames and ports know no link layer, TLP or switch',
      severity: 'error',
      from: { path: '^src/fabric/wire/' },
      to: { path: '^src/fabric/(tlp|link|switch)/' },
    },
    {
      name: 'vfio-user-knows-no-device-or-fabric',
      comment: 'the vfio-user protocol serves any device; src/direct-attach joins a PciFunction to it',
      severity: 'error',
      from: { path: '^src/vfio-user/' },
      to: { path: '^src/(devices|fabric|hi|di|direct-attach|manager|lab)/' },
    },
    {
      name: 'hi-does-not-import-di',
      severity: 'error',
      from: { path: '^src/hi/' },
      to: { path: '^src/di/' },
    },
    {
      name: 'di-does-not-import-hi',
      severity: 'error',
      from: { path: '^src/di/' },
      to: { path: '^src/hi/' },
    },
    {
      name: 'src-never-imports-test-or-bench',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'bench-never-imports-test',
      comment: 'what benchmarks and tests share lives in src/ (e.g. src/vfio-user/client.ts)',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-unresolvable-imports',
      comment: 'an import that resolves to nothing is a broken module (a typo, or a file moved away); the addon binary exists only once built',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true, pathNot: '[.]node$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(native/build|node_modules)/' },
    tsPreCompilationDeps: true,
    // TypeScript 7 has no JS API for dependency-cruiser's default TypeScript parser: swc parses instead.
    parser: 'swc',
    enhancedResolveOptions: {
      extensions: ['.ts', '.js', '.mjs', '.json'],
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
