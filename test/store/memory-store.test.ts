import { MemoryStore } from "../../src/store/memory-store.js";
import { describeStoreConformance } from "./conformance.js";

describeStoreConformance("memory", {
  async create() {
    const store = new MemoryStore();
    // A second "client" of an in-process store is the same store.
    return { store, second: async () => store, cleanup: async () => {} };
  },
});
