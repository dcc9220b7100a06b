// A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs: each file's
// parent directories get entries first, names and data are padded to 4 bytes, TRAILER!!! ends it.
export class CpioWriter {
  private readonly parts: Buffer[] = [];
  private readonly dirs = new Set<string>();
  private ino = 1;

  /** A regular file at `path` (relative, no leading slash). */
  file(path: string, data: Buffer, mode: number): void {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) this.dir(segments.slice(0, i).join('/'));
    this.entry(path, 0o100000 | mode, data);
  }

  private dir(path: string): void {
    if (this.dirs.has(path)) return;
    this.dirs.add(path);
    this.entry(path, 0o040755, Buffer.alloc(0));
  }

  private entry(name: string, mode: number, data: Buffer): void {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [this.ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
    const header = Buffer.from('070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join(''));
    this.parts.push(header, nameBytes, pad(header.length + nameBytes.length), data, pad(data.length));
  }

  /** The archive, ended by its trailer. */
  finish(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0));
    return Buffer.concat(this.parts);
  }
}

function pad(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}
