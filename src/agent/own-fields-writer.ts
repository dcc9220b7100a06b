// What every node source does around writing the agent's own fields and announcing peer changes,
// whatever its backend: writes go one at a time in call order (a slow write never lands after a
// newer one) and an unchanged set of fields is not written again; a write undone by someone else is
// redone; onChange runs only when the admitted peers or the refusals changed.
import type { OwnFields, PeerNode } from './node-source.js';

export class OwnFieldsWriter {
  private last?: OwnFields;
  private lastWritten = '';
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly write: (fields: OwnFields) => Promise<void>) {}

  publish(fields: OwnFields): Promise<void> {
    const p = this.writing.then(async () => {
      const text = JSON.stringify(fields);
      if (text === this.lastWritten) return;
      await this.write(fields);
      this.last = fields;
      this.lastWritten = text;
    });
    this.writing = p.catch(() => undefined);
    return p;
  }

  published(): OwnFields | undefined {
    return this.last;
  }

  /** The stored object no longer says what we wrote (`says` checks it): write it again. */
  reassert(says: (fields: OwnFields) => boolean): void {
    if (!this.last || says(this.last)) return;
    this.lastWritten = '';
    void this.publish(this.last).catch(() => undefined);
  }
}

/** Calls onChange when the peer view differs from the last one it saw. */
export class PeerViewFilter {
  private view = '';
  onChange: () => void = () => undefined;

  update(admitted: PeerNode[], refused: ReadonlyMap<string, string>): void {
    const view = JSON.stringify([admitted, [...refused]]);
    if (view === this.view) return;
    this.view = view;
    this.onChange();
  }
}
