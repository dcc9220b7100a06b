// What every node source does around writing the agent's own fields and announcing peer changes,
// whatever its backend: writes go one at a time in call order (a slow write never lands after a
// newer one) and an unchanged set of fields is not written again; a write undone by someone else is
// redone; onChange runs only when the admitted peers or the refusals changed.
import type { OwnFields, PeerNode } from './node-source.js';

export class OwnFieldsWriter {
  /** The fields of the latest completed write. */
  private last?: OwnFields;
  /** The fields of the latest publish() call (written, being written, or queued). */
  private wanted?: OwnFields;
  private lastWritten = '';
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly write: (fields: OwnFields) => Promise<void>) {}

  publish(fields: OwnFields): Promise<void> {
    this.wanted = fields;
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

  /**
   * The stored object no longer says what we asked for last (`says` checks it): write that again.
   * Checked against the latest fields asked for, not the last written: a watch can deliver our own
   * newest write before that write's call returns, and writing the older fields again then undid
   * it (a node's new IPsec key id went back to the old one until the next status write, 10 s).
   */
  reassert(says: (fields: OwnFields) => boolean): void {
    const wanted = this.wanted;
    if (!wanted || says(wanted)) return;
    this.lastWritten = '';
    void this.publish(wanted).catch(() => undefined);
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
