#!/usr/bin/perl
# In-guest driver for the test device (src/devices/testdev), run by guest.test.ts:
#
#   perl testdev-check.pl <bdf>        e.g. 0000:01:00.0
#
# The guest image has perl without modules, busybox and pciutils, and its Debian
# cloud kernel has neither CONFIG_VFIO_NOIOMMU nor a vIOMMU, so no kernel driver
# can own the device for us (uio_pci_generic does INTx only). The script is the
# driver instead, with the device left unbound:
#   - MMIO reads through an mmap of sysfs resource0 (a real CPU load into the BAR)
#     and through busybox devmem; writes with devmem (an exact 32-bit store; perl
#     cannot store to a mapping). Both work only while no driver claims the BAR
#     (CONFIG_IO_STRICT_DEVMEM).
#   - DMA buffers: two locked anonymous pages of this process, written and read via
#     /proc/self/mem, their guest-physical addresses (= bus addresses, no IOMMU)
#     taken from /proc/self/pagemap and re-checked after the copy.
#   - MSI-X: without a driver there is no vector of our own, so entry 0 of the
#     device's table (emulated by QEMU) gets the live MSI message of the root port
#     above the device; each interrupt the device raises is then counted on that
#     port's line in /proc/interrupts (its PME/AER handlers see nothing to do).
#     The counter only moves if the whole path works: guest table write, QEMU's
#     SET_IRQS eventfd, server signal, QEMU's MSI injection.
#   - MSI: then the same message through the MSI capability (MSI-X off), which
#     QEMU emulates and wires with SET_IRQS index 1; also its per-vector mask.
# Output: "key=value" lines; the test decides what is right. Dies on setup errors.
# No "use strict": the guest's perl has no modules (strict.pm included); perl -Mstrict -c passes on a full perl.

my $bdf = shift // die "usage: $0 <bdf>\n";
my $sys = "/sys/bus/pci/devices/$bdf";
-d $sys or die "no PCI device $bdf\n";

# Register map (src/devices/testdev/testdev.ts).
my %R = (ID => 0x0, SCRATCH => 0x10, DMA_SRC => 0x40, DMA_DST => 0x48, DMA_LEN => 0x50,
         DMA_VECTOR => 0x54, DOORBELL => 0x58, STATUS => 0x5c, DMA_COUNT => 0x60, IRQ_RAISE => 0x64);
my ($BUSY, $DONE, $ERROR) = (1, 2, 4);
my ($MSIX_TABLE) = (0x2000);

my ($SYS_mmap, $SYS_madvise) = (9, 28);
my ($PROT_RW, $MAP_SHARED, $MAP_PRIVATE_ANON_POPULATE_LOCKED) = (3, 1, 0x02 | 0x20 | 0x8000 | 0x2000);
my $MADV_NOHUGEPAGE = 15;
my $PAGE = 4096;

sub out { my ($k, $v) = @_; print "$k=$v\n"; }
sub hex32 { sprintf '0x%08x', $_[0] }
sub sh { my $o = `$_[0]`; $? == 0 or die "failed ($?): $_[0]\n"; chomp $o; $o }

# ---- MMIO ----------------------------------------------------------------------
my ($bar_phys, $bar_end) = map { hex } (split ' ', (sh("head -1 $sys/resource")))[0, 1];
my $bar_size = $bar_end - $bar_phys + 1;
out('bar0', sprintf('0x%x+0x%x', $bar_phys, $bar_size));

open(my $res, '+<', "$sys/resource0") or die "open resource0: $!\n";
my $map = syscall($SYS_mmap, 0, $bar_size, $PROT_RW, $MAP_SHARED, fileno($res), 0);
$map == -1 and die "mmap resource0: $!\n";

sub map_rd32 { unpack 'L<', unpack('P4', pack('J', $map + $_[0])) }
sub dev_rd32 { hex sh(sprintf 'busybox devmem 0x%x 32', $bar_phys + $_[0]) }
sub wr32 { sh(sprintf 'busybox devmem 0x%x 32 0x%x', $bar_phys + $_[0], $_[1]) }
sub wr64 { wr32($_[0], $_[1] & 0xffffffff); wr32($_[0] + 4, $_[1] >> 32) }

out('id_mmap', hex32(map_rd32($R{ID})));
out('id_devmem', hex32(dev_rd32($R{ID})));
my $pattern = 0xa5000000 | ($$ & 0xffffff);
wr32($R{SCRATCH} + 4, $pattern);
out('scratch_written', hex32($pattern));
out('scratch_mmap', hex32(map_rd32($R{SCRATCH} + 4)));
out('scratch_devmem', hex32(dev_rd32($R{SCRATCH} + 4)));

# ---- MSI-X: borrow the root port's message --------------------------------------
my ($port) = (readlink($sys) // '') =~ m{/pci[0-9a-f]{4}:[0-9a-f]{2}/([0-9a-f:.]+)/} or die "no root port above $bdf\n";
opendir(my $irqdir, "/sys/bus/pci/devices/$port/msi_irqs") or die "root port $port: no msi_irqs: $!\n";
my @port_irqs = grep { /^\d+$/ } readdir $irqdir; # (glob needs File::Glob)
@port_irqs == 1 or die "root port $port has @{[scalar @port_irqs]} MSI(-X) vectors, expected 1\n";
my $irq = $port_irqs[0];
my $port_lspci = sh("lspci -vv -s $port");
my ($addr, $data);
if ($port_lspci =~ /MSI-X: Enable\+.*?Vector table: BAR=(\d) offset=([0-9a-f]+)/s) {
  my ($tbar, $toff) = ($1, hex $2);
  my $base = hex((split ' ', (split /\n/, sh("cat /sys/bus/pci/devices/$port/resource"))[$tbar])[0]) + $toff;
  my @e = map { hex sh(sprintf 'busybox devmem 0x%x 32', $base + 4 * $_) } 0 .. 2;
  ($addr, $data) = ($e[0] | ($e[1] << 32), $e[2]);
} elsif ($port_lspci =~ /MSI: Enable\+.*?Address: ([0-9a-f]+)\s+Data: ([0-9a-f]+)/s) {
  ($addr, $data) = (hex $1, hex $2);
} else {
  die "root port $port has no enabled MSI or MSI-X\n";
}
out('msi_borrowed', sprintf('%s irq %d addr 0x%x data 0x%x', $port, $irq, $addr, $data));

sub irq_count {
  open(my $f, '<', '/proc/interrupts') or die "/proc/interrupts: $!\n";
  while (<$f>) {
    next unless /^\s*$irq:((?:\s+\d+)+)/;
    my $n = 0;
    $n += $_ for split ' ', $1;
    return $n;
  }
  die "irq $irq not in /proc/interrupts\n";
}

my $t = $MSIX_TABLE; # entry 0: address lo, address hi, data, vector control (0 = unmasked)
wr32($t, $addr & 0xffffffff);
wr32($t + 4, $addr >> 32);
wr32($t + 8, $data);
wr32($t + 12, 0);
sh("setpci -s $bdf CAP_MSIX+2.w=8000:c000"); # MSI-X Enable, Function Mask clear
out('msix_control', sh("setpci -s $bdf CAP_MSIX+2.w"));

# ---- DMA ---------------------------------------------------------------------------
my $buf = syscall($SYS_mmap, 0, 2 * $PAGE, $PROT_RW, $MAP_PRIVATE_ANON_POPULATE_LOCKED, -1, 0);
$buf == -1 and die "mmap buffers: $!\n";
# A collapse into a huge page would move the buffers under the device.
syscall($SYS_madvise, $buf, 2 * $PAGE, $MADV_NOHUGEPAGE) == 0 or die "madvise: $!\n";
my ($src, $dst) = ($buf, $buf + $PAGE);
open(my $mem, '+<', '/proc/self/mem') or die "/proc/self/mem: $!\n";
sub mem_write { sysseek($mem, $_[0], 0) or die "seek: $!\n"; syswrite($mem, $_[1]) == length $_[1] or die "write: $!\n" }
sub mem_read { my $b; sysseek($mem, $_[0], 0) or die "seek: $!\n"; sysread($mem, $b, $_[1]) == $_[1] or die "read: $!\n"; $b }
open(my $pm, '<', '/proc/self/pagemap') or die "pagemap: $!\n";
sub phys {
  my $e = unpack 'Q<', do { my $b; sysseek($pm, ($_[0] / $PAGE) * 8, 0); sysread($pm, $b, 8) == 8 or die "pagemap read: $!\n"; $b };
  ($e >> 63) or die sprintf "page 0x%x not present\n", $_[0];
  my $pfn = $e & ((1 << 55) - 1);
  $pfn or die "pagemap hides PFNs (not root?)\n";
  $pfn * $PAGE;
}
my $payload = pack 'N*', map { ($_ * 2654435761 + $$) & 0xffffffff } 0 .. $PAGE / 4 - 1;
mem_write($src, $payload);
mem_write($dst, "\xee" x $PAGE);
my ($src_phys, $dst_phys) = (phys($src), phys($dst));
out('dma_buffers', sprintf('src 0x%x dst 0x%x', $src_phys, $dst_phys));

sub wait_idle {
  for (1 .. 500) {
    my $s = dev_rd32($R{STATUS});
    return $s unless $s & $BUSY;
    select(undef, undef, undef, 0.01);
  }
  die "device stayed BUSY\n";
}
sub dma {
  my ($from, $to, $len) = @_;
  wr32($R{STATUS}, $DONE | $ERROR);
  wr64($R{DMA_SRC}, $from);
  wr64($R{DMA_DST}, $to);
  wr32($R{DMA_LEN}, $len);
  wr32($R{DMA_VECTOR}, 0);
  wr32($R{DOORBELL}, 1);
  wait_idle();
}

# MSIs arrive asynchronously (server -> eventfd -> QEMU -> vCPU): wait up to 2 s
# for `expect` of them (at least 200 ms, so that extra ones would show too).
sub irqs_since {
  my ($before, $expect) = @_;
  my $n = 0;
  for my $i (1 .. 200) {
    $n = irq_count() - $before;
    last if $i >= 20 && $n >= $expect;
    select(undef, undef, undef, 0.01);
  }
  $n;
}

# Bus Master Enable clear: no DMA, and no MSI-X either (an MSI is a memory write).
sh("setpci -s $bdf COMMAND=0x02");
my $irq_before = irq_count();
out('dma_no_busmaster_status', hex32(dma($src_phys, $dst_phys, $PAGE)));
out('dma_no_busmaster_dst_untouched', mem_read($dst, $PAGE) eq "\xee" x $PAGE ? 1 : 0);
out('irqs_without_busmaster', irqs_since($irq_before, 0));

sh("setpci -s $bdf COMMAND=0x06");
# Each interrupt is awaited before the next is raised: an MSI that arrives while the
# previous one is still pending (its eventfd unread, or the vCPU not yet run, as
# under a loaded TCG host) merges with it, as on real hardware.
$irq_before = irq_count();
my $expected = 0;
sub settle { irqs_since($irq_before, ++$expected) }
out('dma_status', hex32(dma($src_phys, $dst_phys, $PAGE)));
settle();
out('dma_copied', mem_read($dst, $PAGE) eq $payload ? 1 : 0);
out('dma_buffers_stayed', phys($src) == $src_phys && phys($dst) == $dst_phys ? 1 : 0);
out('dma_count', dev_rd32($R{DMA_COUNT}));
# Far beyond guest RAM: no DMA mapping covers it.
out('dma_unmapped_status', hex32(dma(0x7f00 << 32, $dst_phys, $PAGE)));
settle();
# QEMU maps the BIOS flash without an fd, so the server must fetch it with DMA_READ
# messages (the fallback path and its data layout); /dev/mem shows the truth.
my $FLASH_TOP = 0xfffff000;
open(my $devmem, '<', '/dev/mem') or die "/dev/mem: $!\n";
my $flash = syscall($SYS_mmap, 0, $PAGE, 1, $MAP_SHARED, fileno($devmem), $FLASH_TOP);
$flash == -1 and die "mmap flash: $!\n";
out('dma_flash_status', hex32(dma($FLASH_TOP, $dst_phys, $PAGE)));
settle();
out('dma_flash_copied', mem_read($dst, $PAGE) eq unpack("P$PAGE", pack('J', $flash)) ? 1 : 0);
# Software interrupts.
for (1 .. 3) { wr32($R{IRQ_RAISE}, 0); settle() }
# Three copies (one failed) and three software interrupts, all on vector 0.
out('irqs_with_busmaster', irqs_since($irq_before, 6));

# ---- MSI: the same borrowed message through the MSI capability -------------------
sh("setpci -s $bdf CAP_MSIX+2.w=0000:c000"); # MSI-X off: a function uses one or the other
out('msix_control_off', sh("setpci -s $bdf CAP_MSIX+2.w"));
sh(sprintf 'setpci -s %s CAP_MSI+4.l=%x CAP_MSI+8.l=%x CAP_MSI+c.w=%x', $bdf, $addr & 0xffffffff, $addr >> 32, $data);
sh("setpci -s $bdf CAP_MSI+2.w=0001:0071"); # Enable, Multiple Message Enable = 1 vector
out('msi_control', sh("setpci -s $bdf CAP_MSI+2.w"));
# One at a time: two edges on one vector coalesce if the second comes before the
# first is serviced (seen under TCG), which would hide nothing of interest here.
$irq_before = irq_count();
wr32($R{IRQ_RAISE}, 0);
irqs_since($irq_before, 1);
wr32($R{IRQ_RAISE}, 3); # vector 3 folds onto the only vector allocated
out('irqs_msi', irqs_since($irq_before, 2));
# Per-vector mask: the message waits as pending and is sent when the mask clears.
sh("setpci -s $bdf CAP_MSI+10.l=1");
$irq_before = irq_count();
wr32($R{IRQ_RAISE}, 0);
out('irqs_msi_masked', irqs_since($irq_before, 0));
out('msi_pending', sh("setpci -s $bdf CAP_MSI+14.l"));
sh("setpci -s $bdf CAP_MSI+10.l=0");
out('irqs_msi_unmasked', irqs_since($irq_before, 1));
out('msi_pending_after', sh("setpci -s $bdf CAP_MSI+14.l"));
sh("setpci -s $bdf CAP_MSI+2.w=0000:0071"); # MSI off again
