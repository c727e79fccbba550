// The 128-bit hash of a word sequence that every native key uses (FEC fingerprints, program-row dedup keys,
// live-code keys): two position-dependent splitmix64 mixes of each 64-bit word, summed. `fec.fingerprints`
// computes the same in NumPy (a test compares them).
#pragma once
#include <cstdint>

namespace azjax_hash {

inline uint64_t mix64(uint64_t x) {  // splitmix64's finalizer
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct Hash128 {
  uint64_t h1 = 0, h2 = 0, count = 0;
  // Adds the next word (its position is the number of words added before it, plus one).
  inline void add(uint64_t w) {
    const uint64_t pos = (++count) * 0x9E3779B97F4A7C15ull;
    h1 += mix64(w + pos);
    h2 += mix64((w ^ mix64(pos)) * 0x94D049BB133111EBull + pos);
  }
};

}  // namespace azjax_hash
