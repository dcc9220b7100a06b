// The peers a tunnel last applied to its datapath, and what a pass changes of them: sans-I/O (the
// tunnel sends what update() returns). They are kept by the slot the mode's own table gives each
// peer (DesiredState.slotOf), not in a map of their own: a map by identity held the same peers as
// the mode's table again (~46 B a peer at 5,000).
import { isDeepStrictEqual } from 'node:util';
import { MarkedSlots } from '../util/marked-slots.js';

/** Told each spec as the datapath gets it and loses it (the tunnel's ESP digest, esp-table-digest.ts). */
export interface AppliedSpecsObserver<S> {
  add(message: S): void;
  remove(spec: S): void;
}

/** What one pass sends: the specs new or changed (as their messages), the identities gone. */
export interface PeerChanges<S> { upsert: S[]; remove: string[] }

export class AppliedPeers<S extends object> {
  private readonly applied = new MarkedSlots<S>();

  /** idOf: a spec's identity in the datapath (WireGuard's public key, ESP's peer IP), what a removal names. */
  constructor(private readonly idOf: (spec: S) => string) {}

  /**
   * Pass `pass` (> the last) wants `specs`; slotOf gives each spec's slot (two specs of a pass never
   * share one), message what the datapath is sent of it (and what two specs are compared by).
   * Returns what changed since the last pass. The engines apply removals first, so an identity
   * that moved to another slot in this pass is removed and upserted, and stays.
   */
  update(specs: readonly S[], slotOf: (spec: S) => number, message: (spec: S) => S, pass: number, observer?: AppliedSpecsObserver<S>): PeerChanges<S> {
    const upsert: S[] = [], remove: string[] = [];
    const applied = this.applied, idOf = this.idOf;
    for (let i = 0; i < specs.length; i++) { // indexed: an iterator's results were garbage at every peer
      const spec = specs[i]!;
      const slot = slotOf(spec);
      const had = applied.at(slot);
      // An unchanged spec (nearly every one, every pass) is the same object, marked where it is.
      if (had === spec) {
        applied.mark(slot, pass);
        continue;
      }
      applied.set(slot, spec, pass);
      const sent = message(spec);
      if (had) {
        const was = message(had), sameId = idOf(had) === idOf(spec);
        if (sameId && isDeepStrictEqual(was, sent)) continue;
        observer?.remove(was); // the message: a kept spec's getters would make its SAs again
        if (!sameId) remove.push(idOf(had)); // its peer's identity changed (a new key, a new address)
      }
      upsert.push(sent);
      observer?.add(sent);
    }
    applied.forgetUnmarked(pass, (gone) => {
      remove.push(idOf(gone));
      observer?.remove(gone);
    });
    return { upsert, remove };
  }
}
