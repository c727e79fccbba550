// The functional-equivalence cache's LRU map (azjax/zero/fec.py) in C++, for the host-side evaluator: a batch
// of fingerprint lookups is one call instead of a Python loop over programs x tasks. The semantics are those
// of fec.FECCache's Python implementation: a hit moves the entry to the front and counts; an entry that has
// served `forget_every` hits is dropped; inserting a key (new or present) puts it at the front with count 1;
// the back is evicted beyond `cache_size` entries.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <list>
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
struct Entry {
  Key key;
  double fitness;
  int64_t count;
};

struct Cache {
  int64_t cache_size, forget_every;
  int64_t hits = 0, misses = 0;
  std::list<Entry> order;  // front: most recent
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;

  bool lookup(const Key& k, double* fitness) {
    auto it = index.find(k);
    if (it == index.end()) {
      ++misses;
      return false;
    }
    ++hits;
    order.splice(order.begin(), order, it->second);
    Entry& e = *it->second;
    e.count += 1;
    *fitness = e.fitness;
    if (e.count >= forget_every) {
      order.erase(it->second);
      index.erase(it);
    }
    return true;
  }

  void insert(const Key& k, double fitness) {
    auto it = index.find(k);
    if (it != index.end()) {
      it->second->fitness = fitness;
      it->second->count = 1;
      order.splice(order.begin(), order, it->second);
    } else {
      order.push_front(Entry{k, fitness, 1});
      index.emplace(k, order.begin());
    }
    while (static_cast<int64_t>(order.size()) > cache_size) {
      index.erase(order.back().key);
      order.pop_back();
    }
  }
};

}  // namespace

extern "C" {

void* azjax_fec_new(int64_t cache_size, int64_t forget_every) {
  Cache* c = new Cache();
  c->cache_size = cache_size;
  c->forget_every = forget_every;
  c->index.reserve(static_cast<size_t>(cache_size) + 1);  // no rehashing as the cache fills
  return c;
}


void azjax_fec_free(void* cache) { delete static_cast<Cache*>(cache); }

int64_t azjax_fec_size(void* cache) { return static_cast<int64_t>(static_cast<Cache*>(cache)->order.size()); }

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
  for (const Entry& e : c->order) {
    if (i >= capacity) break;
    keys[2 * i] = e.key.a;
    keys[2 * i + 1] = e.key.b;
    fitness[i] = e.fitness;
    count[i] = e.count;
    ++i;
  }
  return i;
}

// Replaces the contents by n entries given most recent first, and the hit / miss counters.
void azjax_fec_import(void* cache, const uint64_t* keys, const double* fitness, const int64_t* count, int64_t n,
                      int64_t hits, int64_t misses) {
  Cache* c = static_cast<Cache*>(cache);
  c->order.clear();
  c->index.clear();
  for (int64_t i = 0; i < n; ++i) {
    const Key k{keys[2 * i], keys[2 * i + 1]};
    if (c->index.count(k)) continue;
    c->order.push_back(Entry{k, fitness[i], count[i]});
    c->index.emplace(k, std::prev(c->order.end()));
  }
  c->hits = hits;
  c->misses = misses;
}

// The probe memo (search_evaluator._ProbeMemo): pruned-code key -> the probe's T fingerprints, cleared when
// full. A cache of a pure function, so its policy never changes results.
struct ProbeMemo {
  int64_t num_tasks, capacity;
  std::unordered_map<Key, int64_t, KeyHash> index;
  std::vector<uint64_t> rows;  // [capacity, num_tasks, 2]
};

void* azjax_memo_new(int64_t num_tasks, int64_t capacity) {
  ProbeMemo* m = new ProbeMemo();
  m->num_tasks = num_tasks;
  m->capacity = capacity;
  m->rows.resize(static_cast<size_t>(capacity * num_tasks * 2));
  m->index.reserve(static_cast<size_t>(capacity));
  return m;
}

void azjax_memo_free(void* memo) { delete static_cast<ProbeMemo*>(memo); }

int64_t azjax_memo_size(void* memo) { return static_cast<int64_t>(static_cast<ProbeMemo*>(memo)->index.size()); }

// For each u with want[u]: copies the remembered fingerprints into keys[u] (T x 2 words) or sets missing[u].
void azjax_memo_lookup(void* memo, const uint64_t* code, const uint8_t* want, int64_t n, uint64_t* keys,
                       uint8_t* missing) {
  ProbeMemo* m = static_cast<ProbeMemo*>(memo);
  const int64_t w = 2 * m->num_tasks;
  for (int64_t u = 0; u < n; ++u) {
    missing[u] = 0;
    if (!want[u]) continue;
    auto it = m->index.find(Key{code[2 * u], code[2 * u + 1]});
    if (it == m->index.end()) {
      missing[u] = 1;
    } else {
      std::memcpy(keys + u * w, m->rows.data() + it->second * w, w * sizeof(uint64_t));
    }
  }
}

void azjax_memo_insert(void* memo, const uint64_t* code, const uint64_t* keys, const uint8_t* rows, int64_t n) {
  ProbeMemo* m = static_cast<ProbeMemo*>(memo);
  const int64_t w = 2 * m->num_tasks;
  for (int64_t u = 0; u < n; ++u) {
    if (!rows[u]) continue;
    const Key k{code[2 * u], code[2 * u + 1]};
    if (m->index.count(k)) continue;
    if (static_cast<int64_t>(m->index.size()) >= m->capacity) m->index.clear();
    const int64_t i = static_cast<int64_t>(m->index.size());
    m->index.emplace(k, i);
    std::memcpy(m->rows.data() + i * w, keys + u * w, w * sizeof(uint64_t));
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

// 128-bit keys of n byte rows of `width` bytes (search_evaluator.deduplicate): the rows' 64-bit words hashed.
void azjax_hash_rows(const uint8_t* rows, int64_t n, int64_t width, uint64_t* out) {
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* row = rows + r * width;
    azjax_hash::Hash128 h;
    for (int64_t i = 0; i * 8 < width; ++i) {
      uint64_t w = 0;
      std::memcpy(&w, row + i * 8, static_cast<size_t>(std::min<int64_t>(8, width - i * 8)));
      h.add(w);
    }
    out[2 * r] = h.h1 ^ static_cast<uint64_t>(width);
    out[2 * r + 1] = h.h2;
  }
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
