// The functional-equivalence cache's LRU map (azjax/zero/fec.py) in C++, for the host-side evaluator: a batch
// of fingerprint lookups is one call instead of a Python loop over programs x tasks. The semantics are those
// of fec.FECCache's Python implementation: a hit moves the entry to the front and counts; an entry that has
// served `forget_every` hits is dropped; inserting a key (new or present) puts it at the front with count 1;
// the back is evicted beyond `cache_size` entries.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "hash128.h"

namespace {

struct Key {
  uint64_t a, b;
  bool operator==(const Key& o) const { return a == o.a && b == o.b; }
};
struct KeyHash {
  size_t operator()(const Key& k) const { return static_cast<size_t>(k.a ^ (k.b * 0x9E3779B97F4A7C15ull)); }
};

// Entries live in a slab and form a doubly linked recency list (int32 links, front: most recent); an
// open-addressing table (linear probing, deletion by backward shift) maps keys to slab indices. A search step
// inserts and evicts thousands of entries of a full 100k-entry cache: no allocation per entry, and a few
// cache lines touched per operation instead of a list node plus a hash-map node.
struct Cache {
  struct Entry {
    Key key;
    double fitness;
    int64_t count;
    int32_t prev, next;
  };
  int64_t cache_size, forget_every;
  int64_t hits = 0, misses = 0;
  std::vector<Entry> slab;
  std::vector<int32_t> free_slots;
  std::vector<int32_t> table;  // slab index or -1
  uint64_t mask = 0;
  int32_t head = -1, tail = -1;
  int64_t size = 0;

  Cache(int64_t cache_size_, int64_t forget_every_) : cache_size(cache_size_), forget_every(forget_every_) {
    rehash(1024);
  }

  uint64_t home(const Key& k) const { return KeyHash()(k) & mask; }

  void rehash(size_t slots) {
    table.assign(slots, -1);
    mask = slots - 1;
    for (int32_t e = head; e >= 0; e = slab[e].next) {
      uint64_t i = home(slab[e].key);
      while (table[i] >= 0) i = (i + 1) & mask;
      table[i] = e;
    }
  }

  // The table position holding k, or -1.
  int64_t find(const Key& k) const {
    for (uint64_t i = home(k);; i = (i + 1) & mask) {
      const int32_t e = table[i];
      if (e < 0) return -1;
      if (slab[e].key == k) return static_cast<int64_t>(i);
    }
  }

  void erase_position(uint64_t i) {  // backward-shift deletion keeps every probe sequence unbroken
    for (uint64_t j = (i + 1) & mask;; j = (j + 1) & mask) {
      const int32_t e = table[j];
      if (e < 0) break;
      const uint64_t h = home(slab[e].key);
      // Move e back to the hole unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
      if (!stays) {
        table[i] = e;
        i = j;
      }
    }
    table[i] = -1;
  }

  void unlink(int32_t e) {
    Entry& x = slab[e];
    (x.prev >= 0 ? slab[x.prev].next : head) = x.next;
    (x.next >= 0 ? slab[x.next].prev : tail) = x.prev;
  }

  void push_front(int32_t e) {
    slab[e].prev = -1;
    slab[e].next = head;
    (head >= 0 ? slab[head].prev : tail) = e;
    head = e;
  }

  void push_back(int32_t e) {
    slab[e].next = -1;
    slab[e].prev = tail;
    (tail >= 0 ? slab[tail].next : head) = e;
    tail = e;
  }

  void remove(uint64_t position) {
    const int32_t e = table[position];
    erase_position(position);
    unlink(e);
    free_slots.push_back(e);
    --size;
  }

  // A new entry (the key must be absent), linked at the front or the back.
  void add(const Key& k, double fitness, int64_t count, bool front) {
    if (static_cast<uint64_t>(size + 1) * 2 > mask + 1) rehash(2 * (mask + 1));
    int32_t e;
    if (!free_slots.empty()) {
      e = free_slots.back();
      free_slots.pop_back();
    } else {
      e = static_cast<int32_t>(slab.size());
      slab.push_back(Entry{});
    }
    slab[e].key = k;
    slab[e].fitness = fitness;
    slab[e].count = count;
    uint64_t i = home(k);
    while (table[i] >= 0) i = (i + 1) & mask;
    table[i] = e;
    front ? push_front(e) : push_back(e);
    ++size;
  }

  void clear() {
    slab.clear();
    free_slots.clear();
    head = tail = -1;
    size = 0;
    rehash(1024);
  }

  bool lookup(const Key& k, double* fitness) {
    const int64_t i = find(k);
    if (i < 0) {
      ++misses;
      return false;
    }
    ++hits;
    const int32_t e = table[i];
    unlink(e);
    push_front(e);
    Entry& x = slab[e];
    x.count += 1;
    *fitness = x.fitness;
    if (x.count >= forget_every) remove(static_cast<uint64_t>(i));
    return true;
  }

  void insert(const Key& k, double fitness) {
    const int64_t i = find(k);
    if (i >= 0) {
      const int32_t e = table[i];
      slab[e].fitness = fitness;
      slab[e].count = 1;
      unlink(e);
      push_front(e);
    } else {
      add(k, fitness, 1, true);
    }
    while (size > cache_size) remove(static_cast<uint64_t>(find(slab[tail].key)));
  }
};

}  // namespace

extern "C" {

void* azjax_fec_new(int64_t cache_size, int64_t forget_every) {
  return new Cache(cache_size, forget_every);
}


void azjax_fec_free(void* cache) { delete static_cast<Cache*>(cache); }

int64_t azjax_fec_size(void* cache) { return static_cast<Cache*>(cache)->size; }

void azjax_fec_stats(void* cache, int64_t* out) {
  out[0] = static_cast<Cache*>(cache)->hits;
  out[1] = static_cast<Cache*>(cache)->misses;
}

// For each program u with need[u]: looks up its T keys in order (each a hit or a miss); found[u] = 1 and
// fitness[u, :] filled when all were found.
void azjax_fec_lookup_all(void* cache, const uint64_t* keys, int64_t num_programs, int64_t num_tasks,
                          const uint8_t* need, double* fitness, uint8_t* found) {
  Cache* c = static_cast<Cache*>(cache);
  for (int64_t u = 0; u < num_programs; ++u) {
    found[u] = 0;
    if (!need[u]) continue;
    bool all = true;
    for (int64_t t = 0; t < num_tasks; ++t) {
      const uint64_t* k = keys + 2 * (u * num_tasks + t);
      double f = 0.0;
      if (c->lookup(Key{k[0], k[1]}, &f)) {
        fitness[u * num_tasks + t] = f;
      } else {
        all = false;
      }
    }
    found[u] = all ? 1 : 0;
  }
}

void azjax_fec_insert(void* cache, const uint64_t* keys, const double* fitness, int64_t n) {
  Cache* c = static_cast<Cache*>(cache);
  for (int64_t i = 0; i < n; ++i) c->insert(Key{keys[2 * i], keys[2 * i + 1]}, fitness[i]);
}

// Entries, most recent first: keys [n, 2], fitness [n], count [n]; returns n (at most capacity).
int64_t azjax_fec_export(void* cache, uint64_t* keys, double* fitness, int64_t* count, int64_t capacity) {
  Cache* c = static_cast<Cache*>(cache);
  int64_t i = 0;
  for (int32_t e = c->head; e >= 0 && i < capacity; e = c->slab[e].next, ++i) {
    const Cache::Entry& x = c->slab[e];
    keys[2 * i] = x.key.a;
    keys[2 * i + 1] = x.key.b;
    fitness[i] = x.fitness;
    count[i] = x.count;
  }
  return i;
}

// Replaces the contents by n entries given most recent first, and the hit / miss counters.
void azjax_fec_import(void* cache, const uint64_t* keys, const double* fitness, const int64_t* count, int64_t n,
                      int64_t hits, int64_t misses) {
  Cache* c = static_cast<Cache*>(cache);
  c->clear();
  for (int64_t i = 0; i < n; ++i) {
    const Key k{keys[2 * i], keys[2 * i + 1]};
    if (c->find(k) >= 0) continue;
    c->add(k, fitness[i], count[i], false);
  }
  c->hits = hits;
  c->misses = misses;
}

// The probe memo (search_evaluator._ProbeMemo): pruned-code key -> the probe's T fingerprints, cleared when
// full. A cache of a pure function, so its policy never changes results. Entries are only added, or all
// dropped at once, so an open-addressing table of entry indices (at most half full) serves as the index.
struct ProbeMemo {
  int64_t num_tasks, capacity, size = 0;
  std::vector<int64_t> table;  // entry index or -1; a power of two >= 2 * capacity slots
  std::vector<Key> codes;      // [capacity]
  std::vector<uint64_t> rows;  // [capacity, num_tasks, 2]

  // The slot holding `k`, or the empty slot where it would go.
  size_t slot(const Key& k) const {
    const size_t mask = table.size() - 1;
    for (size_t i = static_cast<size_t>(k.a ^ (k.b * 0x9E3779B97F4A7C15ull)) & mask;; i = (i + 1) & mask) {
      const int64_t e = table[i];
      if (e < 0 || (codes[e].a == k.a && codes[e].b == k.b)) return i;
    }
  }
};

void* azjax_memo_new(int64_t num_tasks, int64_t capacity) {
  ProbeMemo* m = new ProbeMemo();
  m->num_tasks = num_tasks;
  m->capacity = std::max<int64_t>(capacity, 1);
  size_t slots = 16;
  while (slots < static_cast<size_t>(2 * m->capacity)) slots *= 2;
  m->table.assign(slots, -1);
  m->codes.resize(static_cast<size_t>(m->capacity));
  m->rows.resize(static_cast<size_t>(m->capacity * num_tasks * 2));
  return m;
}

void azjax_memo_free(void* memo) { delete static_cast<ProbeMemo*>(memo); }

int64_t azjax_memo_size(void* memo) { return static_cast<ProbeMemo*>(memo)->size; }

// For each u with want[u]: copies the remembered fingerprints into keys[u] (T x 2 words) or sets missing[u].
void azjax_memo_lookup(void* memo, const uint64_t* code, const uint8_t* want, int64_t n, uint64_t* keys,
                       uint8_t* missing) {
  ProbeMemo* m = static_cast<ProbeMemo*>(memo);
  const int64_t w = 2 * m->num_tasks;
  for (int64_t u = 0; u < n; ++u) {
    missing[u] = 0;
    if (!want[u]) continue;
    const int64_t e = m->table[m->slot(Key{code[2 * u], code[2 * u + 1]})];
    if (e < 0) {
      missing[u] = 1;
    } else {
      std::memcpy(keys + u * w, m->rows.data() + e * w, w * sizeof(uint64_t));
    }
  }
}

void azjax_memo_insert(void* memo, const uint64_t* code, const uint64_t* keys, const uint8_t* rows, int64_t n) {
  ProbeMemo* m = static_cast<ProbeMemo*>(memo);
  const int64_t w = 2 * m->num_tasks;
  for (int64_t u = 0; u < n; ++u) {
    if (!rows[u]) continue;
    const Key k{code[2 * u], code[2 * u + 1]};
    size_t i = m->slot(k);
    if (m->table[i] >= 0) continue;
    if (m->size >= m->capacity) {  // full: start over
      std::fill(m->table.begin(), m->table.end(), int64_t{-1});
      m->size = 0;
      i = m->slot(k);
    }
    const int64_t e = m->size++;
    m->table[i] = e;
    m->codes[e] = k;
    std::memcpy(m->rows.data() + e * w, keys + u * w, w * sizeof(uint64_t));
  }
}

}  // extern "C"


extern "C" {

// fec.fingerprints: two position-dependent 64-bit mixes of the errors' bit patterns, the task index and the
// number of training steps, summed (the same formula as the NumPy implementation; a test compares them).
void azjax_fec_fingerprint_lane(const double* train_err, const double* valid_err, int64_t n_train,
                                int64_t n_valid, int64_t task, int64_t num_train_steps, uint64_t* out) {
  azjax_hash::Hash128 h;
  for (int64_t i = 0; i < n_train + n_valid; ++i) {
    uint64_t w;
    std::memcpy(&w, i < n_train ? train_err + i : valid_err + (i - n_train), 8);
    h.add(w);
  }
  h.add(static_cast<uint64_t>(task));
  h.add(static_cast<uint64_t>(num_train_steps));
  out[0] = h.h1;
  out[1] = h.h2;
}

// search_evaluator.deduplicate: row r of a batch is the bytes of row r of every leaf (leaf i holds n rows of
// widths[i] bytes). Writes first[0, U): the first row of each distinct row, in order of first appearance, and
// inverse[r]: the index in `first` of row r's copy; returns U. Rows are grouped by a fast 64-bit hash and
// compared byte for byte when their hashes agree, so the result is exact whatever the hash.
int64_t azjax_dedup_rows(const uint8_t* const* leaves, const int64_t* widths, int64_t num_leaves, int64_t n,
                         int64_t* first, int64_t* inverse) {
  std::vector<uint64_t> keys(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int64_t l = 0; l < num_leaves; ++l) {
      const uint8_t* row = leaves[l] + r * widths[l];
      const int64_t whole = widths[l] / 8;  // full words with a fixed-size (inlined) load, then the tail
      for (int64_t i = 0; i < whole; ++i) {
        uint64_t w;
        std::memcpy(&w, row + i * 8, 8);
        h = ((h << 5 | h >> 59) ^ w) * 0x517CC1B727220A95ull;
      }
      if (widths[l] % 8) {
        uint64_t w = 0;
        std::memcpy(&w, row + whole * 8, static_cast<size_t>(widths[l] % 8));
        h = ((h << 5 | h >> 59) ^ w) * 0x517CC1B727220A95ull;
      }
    }
    keys[r] = azjax_hash::mix64(h);
  }
  auto same_rows = [&](int64_t a, int64_t b) {
    for (int64_t l = 0; l < num_leaves; ++l)
      if (std::memcmp(leaves[l] + a * widths[l], leaves[l] + b * widths[l], static_cast<size_t>(widths[l])))
        return false;
    return true;
  };
  size_t slots = 16;
  while (slots < static_cast<size_t>(2 * n)) slots *= 2;
  std::vector<int64_t> table(slots, -1);  // index into `first`
  int64_t U = 0;
  for (int64_t r = 0; r < n; ++r) {
    const uint64_t a = keys[r];
    size_t i = static_cast<size_t>(a) & (slots - 1);
    for (;; i = (i + 1) & (slots - 1)) {
      const int64_t u = table[i];
      if (u < 0) {
        table[i] = U;
        first[U] = r;
        inverse[r] = U++;
        break;
      }
      if (keys[first[u]] == a && same_rows(first[u], r)) {
        inverse[r] = u;
        break;
      }
    }
  }
  return U;
}

void azjax_fec_fingerprints(const double* train_err, const double* valid_err, int64_t num_programs,
                            int64_t num_tasks, int64_t n_train, int64_t n_valid, int64_t num_train_steps,
                            uint64_t* out) {
  for (int64_t p = 0; p < num_programs; ++p) {
    for (int64_t t = 0; t < num_tasks; ++t) {
      const int64_t pt = p * num_tasks + t;
      azjax_fec_fingerprint_lane(train_err + pt * n_train, valid_err + pt * n_valid, n_train, n_valid, t,
                                 num_train_steps, out + 2 * pt);
    }
  }
}

}  // extern "C"
