// A real Linux kernel as a test peer: QEMU (TCG: this host's /dev/kvm cannot run a stock kernel, see
// /work/shared/kernel-peer/README.md) boots the image from image.ts with one virtio NIC on a tap
// that lives in a veil- namespace (a lab's fabric, where the tap becomes one more port of the
// underlay bridge). Commands run in the guest over a second serial port, one connection per
// command (output QEMU receives while no client is connected is lost).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mustRun, run } from '../../src/util/exec.js';
import { configCpio, kernelImage } from './image.js';

export interface KernelVmOptions {
  /** The namespace that holds the tap (a lab's fabric namespace). */
  netns: string;
  /** The tap's name (veil-…), created here and deleted by stop(). */
  tap: string;
  /** A bridge in that namespace to put the tap on. */
  bridge?: string;
  /** The guest's eth0 address with prefix, e.g. 172.18.200.1/16. */
  address: string;
  mtu?: number;
  /** Called with the QEMU pid once started (e.g. to record it so a lab's teardown stops it). */
  onPid?: (pid: number) => void;
}

export interface CommandResult { rc: number; output: string }

export class KernelVm {
  /** Wall-clock ms from QEMU's start to the control shell. */
  bootMs = 0;
  private constructor(private readonly opts: KernelVmOptions, private readonly dir: string, private readonly qemu: ChildProcess, private readonly exited: Promise<void>) {}

  get console(): string {
    return existsSync(join(this.dir, 'console.log')) ? readFileSync(join(this.dir, 'console.log'), 'utf8') : '';
  }

  /** Boots the VM and waits for its control shell (generous deadline: TCG on a loaded 2-core host). */
  static async boot(opts: KernelVmOptions, timeoutMs = 120_000): Promise<KernelVm> {
    const image = kernelImage();
    const dir = mkdtempSync(join(tmpdir(), 'veil-kernel-vm-'));
    const vmCpio = join(dir, 'vm.cpio');
    writeFileSync(vmCpio, Buffer.concat([readFileSync(image.initramfs), configCpio({ 'net.conf': `VM_ADDR=${opts.address}\nVM_MTU=${opts.mtu ?? 1500}\n` })]));
    mustRun(['ip', 'netns', 'exec', opts.netns, 'ip', 'tuntap', 'add', 'dev', opts.tap, 'mode', 'tap']);
    if (opts.bridge) mustRun(['ip', '-n', opts.netns, 'link', 'set', opts.tap, 'master', opts.bridge]);
    mustRun(['ip', '-n', opts.netns, 'link', 'set', opts.tap, 'mtu', String(opts.mtu ?? 1500), 'up']);
    const started = Date.now();
    const qemu = spawn('ip', ['netns', 'exec', opts.netns, 'qemu-system-x86_64',
      // one vCPU: two under MTTCG oops now and then (an int3 text-patching race)
      '-accel', 'tcg,tb-size=64', '-cpu', 'max', '-smp', '1', '-m', '256',
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', image.kernel, '-initrd', vmCpio, '-append', 'console=ttyS0 quiet panic=-1',
      '-serial', `file:${join(dir, 'console.log')}`, '-serial', `unix:${join(dir, 'ctl.sock')},server=on,wait=off`,
      '-netdev', `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`,
      '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:76:6c:01,romfile=',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    qemu.stderr!.on('data', (d) => { stderr += d; });
    const exited = new Promise<void>((r) => qemu.on('exit', () => r()));
    opts.onPid?.(qemu.pid!);
    const vm = new KernelVm(opts, dir, qemu, exited);
    const deadline = Date.now() + timeoutMs;
    while (!vm.console.includes('VM-CTL-READY')) {
      if (qemu.exitCode !== null) { await vm.stop(); throw new Error(`qemu exited (${qemu.exitCode}): ${stderr}\n${vm.console}`); }
      if (Date.now() > deadline) { const c = vm.console; await vm.stop(); throw new Error(`the kernel VM did not reach its control shell in ${timeoutMs} ms:\n${c}`); }
      await new Promise((r) => setTimeout(r, 100));
    }
    vm.bootMs = Date.now() - started;
    if (/VM-WARN/.test(vm.console)) { const c = vm.console; await vm.stop(); throw new Error(`modules failed to load in the VM:\n${c}`); }
    return vm;
  }

  /** Runs one shell line in the guest; its output and exit status. */
  exec(command: string, timeoutMs = 60_000): Promise<CommandResult> {
    if (command.includes('\n')) throw new Error('one line per command');
    return new Promise((resolve, reject) => {
      const sock = connect(join(this.dir, 'ctl.sock'));
      let out = '';
      const timer = setTimeout(() => { sock.destroy(); reject(new Error(`VM command timed out after ${timeoutMs} ms: ${command}\n${out}`)); }, timeoutMs);
      sock.on('connect', () => sock.write(`${command}\n`));
      sock.on('data', (d) => {
        out += d.toString('utf8');
        const m = /VM-END (\d+)\r?\n$/.exec(out);
        if (m) {
          clearTimeout(timer);
          sock.end();
          resolve({ rc: Number(m[1]), output: out.slice(0, m.index).replace(/\r\n/g, '\n') });
        }
      });
      sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  /** exec() that must succeed: its output. */
  async sh(command: string, timeoutMs?: number): Promise<string> {
    const r = await this.exec(command, timeoutMs);
    if (r.rc !== 0) throw new Error(`VM command failed (rc ${r.rc}): ${command}\n${r.output}`);
    return r.output;
  }

  /** Writes a file in the guest (base64 over the control channel, in lines well under a tty's limits). */
  async writeFile(path: string, content: string): Promise<void> {
    const b64 = Buffer.from(content).toString('base64');
    await this.sh(`: > ${path}.b64`);
    for (let i = 0; i < b64.length; i += 1024) await this.sh(`echo ${b64.slice(i, i + 1024)} >> ${path}.b64`);
    await this.sh(`base64 -d ${path}.b64 > ${path} && rm ${path}.b64 && chmod 600 ${path}`);
  }

  /**
   * Runs a shell script in the guest as `sh script` would, line by line in one shell (variables
   * carry over), but stopping at the first line that fails: its line and output in the error. One
   * upload and one command, not a serial-port round trip per line.
   */
  async runScript(script: string): Promise<string> {
    await this.writeFile('/tmp/script.sh', script);
    const r = await this.exec(`(while IFS= read -r l; do case "$l" in ''|'#'*) continue;; esac; eval "$l" || { echo "VM-SCRIPT-FAILED: $l"; exit 1; }; done < /tmp/script.sh)`, 120_000);
    if (r.rc !== 0) throw new Error(`script failed in the VM (rc ${r.rc}):\n${r.output}`);
    return r.output;
  }

  /** Powers the guest off, kills QEMU (by its pid) if it lingers, deletes the tap. Idempotent. */
  async stop(): Promise<void> {
    if (this.qemu.exitCode === null && this.qemu.signalCode === null) {
      await this.exec('poweroff -f', 3000).catch(() => undefined);
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 3000))]);
      if (this.qemu.exitCode === null && this.qemu.signalCode === null) {
        this.qemu.kill('SIGKILL');
        await this.exited;
      }
    }
    run(['ip', '-n', this.opts.netns, 'link', 'del', this.opts.tap]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
