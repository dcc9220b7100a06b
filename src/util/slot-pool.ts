// Small whole numbers handed out and given back: the slots a node source's peers carry (PeerNode.slot),
// which every layer of the agent keeps its columns by. One pool for every source of peers (the
// nodes, the Peer objects added to them), so that two peers never carry the same slot.

export class SlotPool {
  private readonly free: number[] = [];
  private carved = 0;

  /** One more than the highest slot ever handed out: a column of this length holds every slot. */
  get length(): number {
    return this.carved;
  }

  /** A slot: one given back (release), else a new one. */
  take(): number {
    return this.free.pop() ?? this.carved++;
  }

  /** `slot` (one taken) is handed out again by take. */
  release(slot: number): void {
    this.free.push(slot);
  }
}
