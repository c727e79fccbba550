// threefry-2x32 (20 rounds) and the uniform draws of jax.random with jax_threefry_partitionable (JAX's
// default): element i of a draw hashes the counter pair (0, i); 32-bit draws use the xor of the two words,
// 64-bit draws the words as high and low halves. The interpreter's random ops and the mutation kernel's
// fresh rows both draw through these (docs/backends.md).
#pragma once
#include <cstdint>
#include <cstring>

namespace azjax_threefry {

struct Key {
  uint32_t k0, k1;
};

inline uint32_t rotl(uint32_t x, int d) { return (x << d) | (x >> (32 - d)); }

inline void threefry2x32(Key key, uint32_t x0, uint32_t x1, uint32_t* y0, uint32_t* y1) {
  static const int kRot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {key.k0, key.k1, key.k0 ^ key.k1 ^ 0x1BD11BDAu};
  x0 += ks[0];
  x1 += ks[1];
  for (int r = 0; r < 5; ++r) {
    const int* rot = kRot[r % 2];
    for (int j = 0; j < 4; ++j) {
      x0 += x1;
      x1 = rotl(x1, rot[j]);
      x1 ^= x0;
    }
    x0 += ks[(r + 1) % 3];
    x1 += ks[(r + 2) % 3] + static_cast<uint32_t>(r + 1);
  }
  *y0 = x0;
  *y1 = x1;
}

// jax.random.uniform(key, shape, float32) in [0, 1) for element i.
inline float uniform01_f32(Key key, uint32_t i) {
  uint32_t b0, b1;
  threefry2x32(key, 0u, i, &b0, &b1);
  uint32_t bits = ((b0 ^ b1) >> 9) | 0x3F800000u;
  float f;
  std::memcpy(&f, &bits, 4);
  return f - 1.0f;
}

// jax.random.uniform(key, shape, float64) in [0, 1) for element i.
inline double uniform01_f64(Key key, uint32_t i) {
  uint32_t b0, b1;
  threefry2x32(key, 0u, i, &b0, &b1);
  uint64_t bits = ((static_cast<uint64_t>(b0) << 32) | b1) >> 12 | 0x3FF0000000000000ull;
  double f;
  std::memcpy(&f, &bits, 8);
  return f - 1.0;
}

template <typename T>
inline T uniform01(Key key, uint32_t i);
template <>
inline float uniform01<float>(Key key, uint32_t i) { return uniform01_f32(key, i); }
template <>
inline double uniform01<double>(Key key, uint32_t i) { return uniform01_f64(key, i); }

// threefry2x32(key, (0, first + i)) for i in [0, n): the same words as `threefry2x32`, rounds written out so
// that the compiler vectorizes the loop over i (a mutation draws whole rows of uniforms at once).
inline void threefry2x32_range(Key key, uint32_t first, int n, uint32_t* y0, uint32_t* y1) {
  const uint32_t k0 = key.k0, k1 = key.k1, k2 = key.k0 ^ key.k1 ^ 0x1BD11BDAu;
  for (int i = 0; i < n; ++i) {
    uint32_t x0 = k0, x1 = first + static_cast<uint32_t>(i) + k1;
#define AZJAX_MIX(d) x0 += x1; x1 = (x1 << (d)) | (x1 >> (32 - (d))); x1 ^= x0;
    AZJAX_MIX(13) AZJAX_MIX(15) AZJAX_MIX(26) AZJAX_MIX(6) x0 += k1; x1 += k2 + 1u;
    AZJAX_MIX(17) AZJAX_MIX(29) AZJAX_MIX(16) AZJAX_MIX(24) x0 += k2; x1 += k0 + 2u;
    AZJAX_MIX(13) AZJAX_MIX(15) AZJAX_MIX(26) AZJAX_MIX(6) x0 += k0; x1 += k1 + 3u;
    AZJAX_MIX(17) AZJAX_MIX(29) AZJAX_MIX(16) AZJAX_MIX(24) x0 += k1; x1 += k2 + 4u;
    AZJAX_MIX(13) AZJAX_MIX(15) AZJAX_MIX(26) AZJAX_MIX(6) x0 += k2; x1 += k0 + 5u;
#undef AZJAX_MIX
    y0[i] = x0;
    y1[i] = x1;
  }
}

// uniform01<T>(key, first + i) for i in [0, n), into out (n <= 256).
template <typename T>
inline void uniform01_range(Key key, uint32_t first, int n, T* out) {
  uint32_t b0[256], b1[256];
  threefry2x32_range(key, first, n, b0, b1);
  for (int i = 0; i < n; ++i) {
    if constexpr (sizeof(T) == 4) {
      const uint32_t bits = ((b0[i] ^ b1[i]) >> 9) | 0x3F800000u;
      float f;
      std::memcpy(&f, &bits, 4);
      out[i] = f - 1.0f;
    } else {
      const uint64_t bits = ((static_cast<uint64_t>(b0[i]) << 32) | b1[i]) >> 12 | 0x3FF0000000000000ull;
      double f;
      std::memcpy(&f, &bits, 8);
      out[i] = f - 1.0;
    }
  }
}

}  // namespace azjax_threefry
