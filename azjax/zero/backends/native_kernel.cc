// The native CPU backend of the AutoML-Zero interpreter: one XLA FFI custom call that evaluates a whole
// batch of (program, task) pairs.
//
// Semantics are those of the JAX backends (azjax/zero/evaluate.py and azjax/zero/ops.py); docs/backends.md
// states the exactness guarantee. In short, per (program, task): dead instructions are pruned (the same
// liveness rule as azjax/zero/liveness.py), memory is zeroed, Setup runs once, then every epoch trains over
// the task's example order (Predict, early stop on NaN or a too large error, Learn) and validates (Predict
// only); the best epoch's fitness counts. Random ops draw from threefry-2x32 keys derived exactly as
// `jax.random.fold_in(lane_key, counter)` with the counter rule of docs/backends.md.
//
// The op table at the bottom of this file (kOpTable) must equal azjax/zero/ops.py's; a test compares them.
//
// Threading: (program, task) pairs are spread over a persistent pool of worker threads (AZJAX_NATIVE_THREADS,
// default: all hardware threads). A call that finds the pool busy (e.g. several XLA devices calling at
// once) runs its pairs on the calling thread.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"
#include "hash128.h"
#include "pool.h"
#include "threefry.h"

#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace ffi = xla::ffi;

// fec_cache.cc: the FEC fingerprint of one (program, task) probe, the formula of fec.fingerprints.
extern "C" void azjax_fec_fingerprint_lane(const double* train_err, const double* valid_err, int64_t n_train,
                                           int64_t n_valid, int64_t task, int64_t num_train_steps, uint64_t* out);

namespace azjax_native {

// ----------------------------------------------------------------------------------------------------------
// Op ids (azjax/zero/ops.py) and per-op operand types: 0 none, 1 scalar, 2 vector, 3 matrix.
enum Op : int {
  NO_OP = 0, SCALAR_SUM, SCALAR_DIFF, SCALAR_PRODUCT, SCALAR_DIVISION, SCALAR_ABS, SCALAR_RECIPROCAL,
  SCALAR_SIN, SCALAR_COS, SCALAR_TAN, SCALAR_ARCSIN, SCALAR_ARCCOS, SCALAR_ARCTAN, SCALAR_EXP, SCALAR_LOG,
  SCALAR_HEAVYSIDE, VECTOR_HEAVYSIDE, MATRIX_HEAVYSIDE, SCALAR_VECTOR_PRODUCT, SCALAR_BROADCAST,
  VECTOR_RECIPROCAL, VECTOR_NORM, VECTOR_ABS, VECTOR_SUM, VECTOR_DIFF, VECTOR_PRODUCT, VECTOR_DIVISION,
  VECTOR_INNER_PRODUCT, VECTOR_OUTER_PRODUCT, SCALAR_MATRIX_PRODUCT, MATRIX_RECIPROCAL,
  MATRIX_VECTOR_PRODUCT, VECTOR_COLUMN_BROADCAST, VECTOR_ROW_BROADCAST, MATRIX_NORM, MATRIX_COLUMN_NORM,
  MATRIX_ROW_NORM, MATRIX_TRANSPOSE, MATRIX_ABS, MATRIX_SUM, MATRIX_DIFF, MATRIX_PRODUCT, MATRIX_DIVISION,
  MATRIX_MATRIX_PRODUCT, SCALAR_MIN, VECTOR_MIN, MATRIX_MIN, SCALAR_MAX, VECTOR_MAX, MATRIX_MAX,
  VECTOR_MEAN, MATRIX_MEAN, MATRIX_ROW_MEAN, MATRIX_ROW_ST_DEV, VECTOR_ST_DEV, MATRIX_ST_DEV,
  SCALAR_CONST_SET, VECTOR_CONST_SET, MATRIX_CONST_SET, SCALAR_UNIFORM_SET, VECTOR_UNIFORM_SET,
  MATRIX_UNIFORM_SET, SCALAR_GAUSSIAN_SET, VECTOR_GAUSSIAN_SET, MATRIX_GAUSSIAN_SET, NUM_OPS
};

struct OpTypes {
  int8_t in1, in2, out;
  bool reads_output;
  int8_t float32_slots = 0;  // bit k: constant slot k is stored as float32 (the reference's float_data_k)
  int8_t index_slots = 0;    // bit k: constant slot k is an element-index fraction
};

// {in1, in2, out, reads_output, float32_slots, index_slots} per op id; checked against the instruction-set
// table (azjax/zero/ops.py) by tests/zero/test_backends.py.
constexpr OpTypes kOpTable[NUM_OPS] = {
    {0, 0, 0, 0},                                                                // NO_OP
    {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0},                      // 1-4
    {1, 0, 1, 0}, {1, 0, 1, 0}, {1, 0, 1, 0}, {1, 0, 1, 0}, {1, 0, 1, 0},        // 5-9
    {1, 0, 1, 0}, {1, 0, 1, 0}, {1, 0, 1, 0}, {1, 0, 1, 0}, {1, 0, 1, 0},        // 10-14
    {1, 0, 1, 0}, {2, 0, 2, 0}, {3, 0, 3, 0},                                    // 15-17
    {1, 2, 2, 0}, {1, 0, 2, 0}, {2, 0, 2, 0}, {2, 0, 1, 0}, {2, 0, 2, 0},        // 18-22
    {2, 2, 2, 0}, {2, 2, 2, 0}, {2, 2, 2, 0}, {2, 2, 2, 0}, {2, 2, 1, 0},        // 23-27
    {2, 2, 3, 0}, {1, 3, 3, 0}, {3, 0, 3, 0}, {3, 2, 2, 0}, {2, 0, 3, 0},        // 28-32
    {2, 0, 3, 0}, {3, 0, 1, 0}, {3, 0, 2, 0}, {3, 0, 2, 0}, {3, 0, 3, 0},        // 33-37
    {3, 0, 3, 0}, {3, 3, 3, 0}, {3, 3, 3, 0}, {3, 3, 3, 0}, {3, 3, 3, 0},        // 38-42
    {3, 3, 3, 0}, {1, 1, 1, 0}, {2, 2, 2, 0}, {3, 3, 3, 0}, {1, 1, 1, 0},        // 43-47
    {2, 2, 2, 0}, {3, 3, 3, 0}, {2, 0, 1, 0}, {3, 0, 1, 0}, {3, 0, 2, 0},        // 48-52
    {3, 0, 2, 0}, {2, 0, 1, 0}, {3, 0, 1, 0},                                    // 53-55
    {0, 0, 1, 0, 0, 0}, {0, 0, 2, 1, 3, 1}, {0, 0, 3, 1, 7, 3},                  // 56-58
    {0, 0, 1, 0, 3, 0}, {0, 0, 2, 0, 3, 0}, {0, 0, 3, 0, 3, 0},                  // 59-61
    {0, 0, 1, 0, 3, 0}, {0, 0, 2, 0, 3, 0}, {0, 0, 3, 0, 3, 0},                  // 62-64
};

// ----------------------------------------------------------------------------------------------------------
// threefry-2x32 and jax.random's uniform bits come from threefry.h; fold_in is jax.random.fold_in.
using azjax_threefry::Key;
using azjax_threefry::threefry2x32;
using azjax_threefry::uniform01;

static inline Key fold_in(Key key, uint32_t data) {
  Key out;
  threefry2x32(key, 0u, data, &out.k0, &out.k1);
  return out;
}

// erfinv: single precision as XLA's polynomial (Giles); double precision by Newton steps on std::erf. Gaussian
// draws are therefore equal to jax.random.normal's up to a few ulps (docs/backends.md).
static inline float erfinv_f32(float x) {
  static const float lt5[9] = {2.81022636e-08f, 3.43273939e-07f, -3.5233877e-06f,
                               -4.39150654e-06f, 0.00021858087f, -0.00125372503f,
                               -0.00417768164f, 0.246640727f, 1.50140941f};
  static const float ge5[9] = {-0.000200214257f, 0.000100950558f, 0.00134934322f,
                               -0.00367342844f, 0.00573950773f, -0.0076224613f,
                               0.00943887047f, 1.00167406f, 2.83297682f};
  if (std::fabs(x) == 1.0f) return x * std::numeric_limits<float>::infinity();
  float w = -std::log1p(-x * x);
  const bool lt = w < 5.0f;
  const float* c = lt ? lt5 : ge5;
  w = lt ? w - 2.5f : std::sqrt(w) - 3.0f;
  float p = c[0];
  for (int i = 1; i < 9; ++i) p = c[i] + p * w;
  return p * x;
}

static inline double erfinv_f64(double x) {
  if (std::fabs(x) >= 1.0) return x == 1.0 ? HUGE_VAL : (x == -1.0 ? -HUGE_VAL : NAN);
  double y = static_cast<double>(erfinv_f32(static_cast<float>(x)));
  if (!std::isfinite(y)) y = (x > 0 ? 1 : -1) * 5.9;
  for (int it = 0; it < 3; ++it) {
    const double err = std::erf(y) - x;
    y -= err / (1.1283791670955126 * std::exp(-y * y));
  }
  return y;
}

template <typename T>
static inline T standard_normal(Key key, uint32_t i) {
  // jax: u = uniform(key, lo=nextafter(-1, 0), hi=1); sqrt(2) * erfinv(u)
  const T lo = std::nextafter(T(-1), T(0));
  T u = uniform01<T>(key, i) * (T(1) - lo) + lo;
  u = std::max(lo, u);
  if constexpr (sizeof(T) == 4) {
    return static_cast<T>(1.41421356237309504880f) * erfinv_f32(u);
  } else {
    return 1.4142135623730951 * erfinv_f64(u);
  }
}

template <typename V>
static inline void grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// ----------------------------------------------------------------------------------------------------------
// Decoded instructions: memory offsets instead of bank addresses.
template <typename T>
struct Instr {
  int32_t op;
  int32_t a, b, o;  // offsets into the lane's flat memory
  int32_t pos;      // position in the unpruned component (the random-op counter)
  int32_t i0, i1;   // element indices of the const sets
  T d0, d1, d2;
};

struct Layout {
  int S, V, M, F;
  int offset(int type, int addr) const {
    switch (type) {
      case 1: return addr;
      case 2: return S + addr * F;
      case 3: return S + V * F + addr * F * F;
      default: return 0;
    }
  }
  int total() const { return S + V * F + M * F * F; }
};

// Liveness over the three components (as azjax/zero/liveness.py): slots are S + V + M bank addresses.
struct Liveness {
  const Layout& L;
  explicit Liveness(const Layout& l) : L(l) {}
  int slot(int type, int addr) const {
    switch (type) {
      case 1: return addr;
      case 2: return L.S + addr;
      case 3: return L.S + L.V + addr;
      default: return -1;
    }
  }
  // Walks one component backwards; updates `live` in place and marks live instructions.
  void backward(const int32_t* ins, int n, char* live, char* flags) const {
    for (int k = n - 1; k >= 0; --k) {
      const int32_t* x = ins + 4 * k;
      const int op = x[0];
      const OpTypes t = (op >= 0 && op < NUM_OPS) ? kOpTable[op] : OpTypes{0, 0, 0, 0};
      bool is_live = false;
      if (t.out) {
        const int os = slot(t.out, x[3]);
        if (live[os]) {
          is_live = true;
          if (!t.reads_output) live[os] = 0;
          if (t.in1) live[slot(t.in1, x[1])] = 1;
          if (t.in2) live[slot(t.in2, x[2])] = 1;
        }
      }
      if (flags) flags[k] = is_live;
    }
  }
};

template <typename T>
struct DecodedProgram {
  const Instr<T>* code[3];  // setup, predict, learn: the live instructions in order
  int size[3];
};

template <typename T>
static int decode(const int32_t* ins, const T* data, int n, const char* flags, const Layout& L, Instr<T>* out) {
  int count = 0;
  for (int k = 0; k < n; ++k) {
    if (flags && !flags[k]) continue;
    const int32_t* x = ins + 4 * k;
    const T* d = data + 3 * k;
    const int op = x[0];
    if (op == NO_OP) continue;  // NO_OPs are dead by construction; unpruned runs skip them too
    const OpTypes t = kOpTable[op];
    Instr<T> I;
    I.op = op;
    I.a = L.offset(t.in1, x[1]);
    I.b = L.offset(t.in2, x[2]);
    I.o = L.offset(t.out, x[3]);
    I.pos = k;
    // Constants the reference stores as float32 are read as float32, also in a float64 run.
    auto stored = [&](int slot) {
      return (t.float32_slots >> slot) & 1 ? static_cast<T>(static_cast<float>(d[slot])) : d[slot];
    };
    I.d0 = stored(0);
    I.d1 = stored(1);
    I.d2 = stored(2);
    auto index = [&](T fraction) {
      // floor(F * f) in float32, clipped to [0, F - 1] (as ops.py's _index).
      const float v = std::floor(static_cast<float>(fraction) * static_cast<float>(L.F));
      int i = (v != v) ? 0 : (v < 0.0f ? 0 : (v > static_cast<float>(L.F - 1) ? L.F - 1 : static_cast<int>(v)));
      return i;
    };
    I.i0 = (t.index_slots & 1) ? index(d[0]) : 0;
    I.i1 = (t.index_slots & 2) ? index(d[1]) : 0;
    out[count++] = I;
  }
  return count;
}

// ----------------------------------------------------------------------------------------------------------
// The ops. FS is the compile-time vector length (0: the runtime F). Results go through a scratch buffer
// where an output may alias an input of another shape.
//
// Sums follow the reference's order (docs/backends.md, "Exactness"): there is no +0 start value, so a sum of
// -0 terms is -0, and a sum of 2^k equal values is exact. A full reduction (a vector, or a matrix read in
// column-major order) adds packets of two elements as a halving tree, then the two lanes, then a leftover
// element; a reduction along one matrix axis is a halving tree over its F terms. `term(k)` is the k-th term.
// The terms are written into a buffer first (`kSumBuffer` elements on the stack, small enough to need no
// stack probing; longer sums fall back to recursion over the term function). The sums are forced inline so
// that with a compile-time F (the FS specializations) they unroll into straight-line adds.
constexpr int kSumBuffer = 64;

// The halving tree of 2^k terms; destroys x.
template <typename T>
__attribute__((always_inline)) static inline T pairwise_in_place(T* x, int n, int stride) {
  // For 2^k terms the halving tree is the bottom-up pairwise reduction (not recursive, so it inlines and
  // unrolls for a compile-time F).
  for (int w = 1; w < n; w *= 2)
    for (int i = 0; i + w < n; i += 2 * w) x[i * stride] += x[(i + w) * stride];
  return x[0];
}

template <typename T>
static T tree_in_place_general(T* x, int n, int stride) {  // halving tree over x[0], x[stride], ...; destroys x
  if ((n & (n - 1)) == 0) return pairwise_in_place(x, n, stride);
  const int half = n / 2;
  const T left = tree_in_place_general(x, half, stride);
  return left + tree_in_place_general(x + half * stride, n - half, stride);
}

template <typename T>
__attribute__((always_inline)) static inline T tree_in_place(T* x, int n, int stride) {
  return (n & (n - 1)) == 0 ? pairwise_in_place(x, n, stride) : tree_in_place_general(x, n, stride);
}

// The full-reduction rule over x[0..n); destroys x.
template <typename T>
__attribute__((always_inline)) static inline T packet_sum_in_place(T* x, int n) {
  if (n == 1) return x[0];
  const int pairs = n / 2;
  const T lane0 = tree_in_place(x, pairs, 2);
  const T lane1 = tree_in_place(x + 1, pairs, 2);
  const T total = lane0 + lane1;
  return (n % 2) ? total + x[n - 1] : total;
}

template <typename T, typename Term>
static inline T halving_tree(const Term& term, int lo, int n) {
  if (n == 1) return term(lo);
  const int half = n / 2;
  return halving_tree<T>(term, lo, half) + halving_tree<T>(term, lo + half, n - half);
}

// The full-reduction rule over term(0..n) (a vector's elements in order).
template <typename T, typename Term>
__attribute__((always_inline)) static inline T full_sum(const Term& term, int n) {
  if (n <= kSumBuffer) {
    T buf[kSumBuffer];
    for (int k = 0; k < n; ++k) buf[k] = term(k);
    return packet_sum_in_place(buf, n);
  }
  if (n == 1) return term(0);
  const int pairs = n / 2;
  const T total = halving_tree<T>([&](int k) { return term(2 * k); }, 0, pairs) +
                  halving_tree<T>([&](int k) { return term(2 * k + 1); }, 0, pairs);
  return (n % 2) ? total + term(n - 1) : total;
}

template <typename T, typename Term>
__attribute__((always_inline)) static inline T axis_sum(const Term& term, int n) {
  if (n > kSumBuffer) return halving_tree<T>(term, 0, n);
  T buf[kSumBuffer];
  for (int k = 0; k < n; ++k) buf[k] = term(k);
  return tree_in_place(buf, n, 1);
}

template <typename T, int FS>
struct Machine {
  int F_;
  T* mem;
  T* scratch;   // F * F
  T* colmajor;  // F * F
  Key lane_key;
  inline int F() const { return FS ? FS : F_; }
  // The full-reduction rule over f(element) of a row-major F x F matrix read in column-major order (the
  // reference's Eigen layout), through the `colmajor` buffer.
  template <typename Fn>
  inline T matrix_sum(const T* m, const Fn& f) {
    const int F = this->F();
    for (int j = 0; j < F; ++j)
      for (int i = 0; i < F; ++i) colmajor[j * F + i] = f(m[i * F + j]);
    return packet_sum_in_place(colmajor, F * F);
  }

  inline void random_fill(T* o, int n, const Instr<T>& I, uint32_t counter, bool gaussian) {
    const Key k = fold_in(lane_key, counter);
    if (gaussian) {
      for (int i = 0; i < n; ++i) o[i] = I.d0 + I.d1 * standard_normal<T>(k, i);
    } else {
      const bool ordered = I.d0 < I.d1;
      const T width = I.d1 - I.d0;
      for (int i = 0; i < n; ++i) o[i] = ordered ? I.d0 + width * uniform01<T>(k, i) : I.d0;
    }
  }

  // Runs n decoded instructions; `counter0` is the random-op counter base of this run.
  __attribute__((always_inline)) inline void run(const Instr<T>* ins, int n, uint32_t counter0) {
    const int F = this->F();
    const int FF = F * F;
    for (int k = 0; k < n; ++k) {
      const Instr<T>& I = ins[k];
      T* a = mem + I.a;
      T* b = mem + I.b;
      T* o = mem + I.o;
      switch (I.op) {
        case NO_OP: break;
        case SCALAR_SUM: *o = *a + *b; break;
        case SCALAR_DIFF: *o = *a - *b; break;
        case SCALAR_PRODUCT: *o = *a * *b; break;
        case SCALAR_DIVISION: *o = *a / *b; break;
        case SCALAR_ABS: *o = std::fabs(*a); break;
        case SCALAR_RECIPROCAL: *o = T(1) / *a; break;
        case SCALAR_SIN: *o = std::sin(*a); break;
        case SCALAR_COS: *o = std::cos(*a); break;
        case SCALAR_TAN: *o = std::tan(*a); break;
        case SCALAR_ARCSIN: *o = std::asin(*a); break;
        case SCALAR_ARCCOS: *o = std::acos(*a); break;
        case SCALAR_ARCTAN: *o = std::atan(*a); break;
        case SCALAR_EXP: *o = std::exp(*a); break;
        case SCALAR_LOG: *o = std::log(*a); break;
        case SCALAR_HEAVYSIDE: *o = (*a >= T(0)) ? T(1) : T(0); break;
        case VECTOR_HEAVYSIDE: for (int i = 0; i < F; ++i) o[i] = (a[i] > T(0)) ? T(1) : T(0); break;
        case MATRIX_HEAVYSIDE: for (int i = 0; i < FF; ++i) o[i] = (a[i] > T(0)) ? T(1) : T(0); break;
        case SCALAR_VECTOR_PRODUCT: { const T s = *a; for (int i = 0; i < F; ++i) o[i] = s * b[i]; break; }
        case SCALAR_BROADCAST: { const T s = *a; for (int i = 0; i < F; ++i) o[i] = s; break; }
        case VECTOR_RECIPROCAL: for (int i = 0; i < F; ++i) o[i] = T(1) / a[i]; break;
        case VECTOR_NORM: *o = std::sqrt(full_sum<T>([&](int i) { return a[i] * a[i]; }, F)); break;
        case VECTOR_ABS: for (int i = 0; i < F; ++i) o[i] = std::fabs(a[i]); break;
        case VECTOR_SUM: for (int i = 0; i < F; ++i) o[i] = a[i] + b[i]; break;
        case VECTOR_DIFF: for (int i = 0; i < F; ++i) o[i] = a[i] - b[i]; break;
        case VECTOR_PRODUCT: for (int i = 0; i < F; ++i) o[i] = a[i] * b[i]; break;
        case VECTOR_DIVISION: for (int i = 0; i < F; ++i) o[i] = a[i] / b[i]; break;
        case VECTOR_INNER_PRODUCT: *o = full_sum<T>([&](int i) { return a[i] * b[i]; }, F); break;
        case VECTOR_OUTER_PRODUCT:
          for (int i = 0; i < F; ++i) for (int j = 0; j < F; ++j) scratch[i * F + j] = a[i] * b[j];
          std::memcpy(o, scratch, sizeof(T) * FF);
          break;
        case SCALAR_MATRIX_PRODUCT: { const T s = *a; for (int i = 0; i < FF; ++i) o[i] = s * b[i]; break; }
        case MATRIX_RECIPROCAL: for (int i = 0; i < FF; ++i) o[i] = T(1) / a[i]; break;
        case MATRIX_VECTOR_PRODUCT:
          for (int i = 0; i < F; ++i) scratch[i] = axis_sum<T>([&](int j) { return a[i * F + j] * b[j]; }, F);
          std::memcpy(o, scratch, sizeof(T) * F);
          break;
        case VECTOR_COLUMN_BROADCAST:
          for (int i = 0; i < F; ++i) for (int j = 0; j < F; ++j) scratch[i * F + j] = a[i];
          std::memcpy(o, scratch, sizeof(T) * FF);
          break;
        case VECTOR_ROW_BROADCAST:
          for (int i = 0; i < F; ++i) for (int j = 0; j < F; ++j) scratch[i * F + j] = a[j];
          std::memcpy(o, scratch, sizeof(T) * FF);
          break;
        case MATRIX_NORM: *o = std::sqrt(matrix_sum(a, [](T x) { return x * x; })); break;
        case MATRIX_COLUMN_NORM:
          for (int j = 0; j < F; ++j)
            scratch[j] = std::sqrt(axis_sum<T>([&](int i) { return a[i * F + j] * a[i * F + j]; }, F));
          std::memcpy(o, scratch, sizeof(T) * F);
          break;
        case MATRIX_ROW_NORM:
          for (int i = 0; i < F; ++i) scratch[i] = std::sqrt(axis_sum<T>([&](int j) { return a[i * F + j] * a[i * F + j]; }, F));
          std::memcpy(o, scratch, sizeof(T) * F);
          break;
        case MATRIX_TRANSPOSE:
          for (int i = 0; i < F; ++i) for (int j = 0; j < F; ++j) scratch[i * F + j] = a[j * F + i];
          std::memcpy(o, scratch, sizeof(T) * FF);
          break;
        case MATRIX_ABS: for (int i = 0; i < FF; ++i) o[i] = std::fabs(a[i]); break;
        case MATRIX_SUM: for (int i = 0; i < FF; ++i) o[i] = a[i] + b[i]; break;
        case MATRIX_DIFF: for (int i = 0; i < FF; ++i) o[i] = a[i] - b[i]; break;
        case MATRIX_PRODUCT: for (int i = 0; i < FF; ++i) o[i] = a[i] * b[i]; break;
        case MATRIX_DIVISION: for (int i = 0; i < FF; ++i) o[i] = a[i] / b[i]; break;
        case MATRIX_MATRIX_PRODUCT:
          for (int i = 0; i < F; ++i)
            for (int k2 = 0; k2 < F; ++k2)
              scratch[i * F + k2] = axis_sum<T>([&](int j) { return a[i * F + j] * b[j * F + k2]; }, F);
          std::memcpy(o, scratch, sizeof(T) * FF);
          break;
        case SCALAR_MIN: { const T x = *a, y = *b; *o = (y < x) ? y : x; break; }
        case VECTOR_MIN: for (int i = 0; i < F; ++i) o[i] = (b[i] < a[i]) ? b[i] : a[i]; break;  // std::min
        case MATRIX_MIN: for (int i = 0; i < FF; ++i) o[i] = (a[i] < b[i]) ? a[i] : b[i]; break;
        case SCALAR_MAX: { const T x = *a, y = *b; *o = (x < y) ? y : x; break; }
        case VECTOR_MAX: for (int i = 0; i < F; ++i) o[i] = (a[i] < b[i]) ? b[i] : a[i]; break;  // std::max
        case MATRIX_MAX: for (int i = 0; i < FF; ++i) o[i] = (a[i] > b[i]) ? a[i] : b[i]; break;
        case VECTOR_MEAN: *o = full_sum<T>([&](int i) { return a[i]; }, F) / static_cast<T>(F); break;
        case MATRIX_MEAN: *o = matrix_sum(a, [](T x) { return x; }) / static_cast<T>(FF); break;
        case MATRIX_ROW_MEAN:
          for (int i = 0; i < F; ++i) scratch[i] = axis_sum<T>([&](int j) { return a[i * F + j]; }, F) / static_cast<T>(F);
          std::memcpy(o, scratch, sizeof(T) * F);
          break;
        case MATRIX_ROW_ST_DEV:
          for (int i = 0; i < F; ++i) {
            const T* r = a + i * F;
            const T m = axis_sum<T>([&](int j) { return r[j]; }, F) / static_cast<T>(F);
            const T m2 = axis_sum<T>([&](int j) { return r[j] * r[j]; }, F) / static_cast<T>(F);
            scratch[i] = std::sqrt(m2 - m * m);
          }
          std::memcpy(o, scratch, sizeof(T) * F);
          break;
        case VECTOR_ST_DEV: {
          const T m = full_sum<T>([&](int i) { return a[i]; }, F) / static_cast<T>(F);
          const T m2 = full_sum<T>([&](int i) { return a[i] * a[i]; }, F) / static_cast<T>(F);
          *o = std::sqrt(m2 - m * m);
          break;
        }
        case MATRIX_ST_DEV: {
          const T m = matrix_sum(a, [](T x) { return x; }) / static_cast<T>(FF);
          const T m2 = matrix_sum(a, [](T x) { return x * x; }) / static_cast<T>(FF);
          *o = std::sqrt(m2 - m * m);
          break;
        }
        case SCALAR_CONST_SET: *o = I.d0; break;
        case VECTOR_CONST_SET: o[I.i0] = I.d1; break;
        case MATRIX_CONST_SET: o[I.i0 * F + I.i1] = I.d2; break;
        case SCALAR_UNIFORM_SET: random_fill(o, 1, I, counter0 + I.pos, false); break;
        case VECTOR_UNIFORM_SET: random_fill(o, F, I, counter0 + I.pos, false); break;
        case MATRIX_UNIFORM_SET: random_fill(o, FF, I, counter0 + I.pos, false); break;
        case SCALAR_GAUSSIAN_SET: random_fill(o, 1, I, counter0 + I.pos, true); break;
        case VECTOR_GAUSSIAN_SET: random_fill(o, F, I, counter0 + I.pos, true); break;
        case MATRIX_GAUSSIAN_SET: random_fill(o, FF, I, counter0 + I.pos, true); break;
        default: break;
      }
    }
  }
};

// ----------------------------------------------------------------------------------------------------------
// Evaluation of one (program, task) pair.
struct Config {
  Layout L;
  int eval_type;  // 0 rms, 1 accuracy, 2 multiclass (label vector v1, prediction v2, softmax)
  int num_classes = 0;
  int num_epochs;
  double max_abs_error;
  int64_t la, lb;  // random-op counter strides: step * (la + lb) (+ la for Learn)
  int64_t fingerprint_steps = 0;  // > 0: return FEC fingerprints (keyed by this step count), not predictions
};

static Config make_config(int64_t num_scalars, int64_t num_vectors, int64_t num_matrices, int64_t features,
                          int64_t eval_type, int64_t num_classes, int64_t num_epochs, double max_abs_error,
                          int64_t la, int64_t lb, int64_t fingerprint_steps) {
  Config cfg;
  cfg.L = Layout{static_cast<int>(num_scalars), static_cast<int>(num_vectors), static_cast<int>(num_matrices),
                 static_cast<int>(features)};
  cfg.eval_type = static_cast<int>(eval_type);
  cfg.num_classes = static_cast<int>(num_classes);
  cfg.num_epochs = static_cast<int>(num_epochs);
  cfg.max_abs_error = max_abs_error;
  cfg.la = la;
  cfg.lb = lb;
  cfg.fingerprint_steps = fingerprint_steps;
  return cfg;
}

template <typename T>
struct TaskView {
  const T *train_x, *train_y, *valid_x, *valid_y;
  const int32_t* orders;  // [E, N]
  int N, M;
};

template <typename T>
static inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <typename T>
static inline T rms_fitness(T mean_sq) {
  const T rmse = std::sqrt(mean_sq);
  if (!std::isfinite(rmse)) return T(0);
  return T(1) - static_cast<T>(2.0 / M_PI) * std::atan(rmse);
}

template <typename T, int FS>
static T evaluate_pair(const DecodedProgram<T>& prog, const TaskView<T>& task, const Config& cfg, Key key,
                       bool active, T* mem, T* scratch, T* preds /* [E * (N + M)] or null */) {
  const Layout& L = cfg.L;
  const int F = FS ? FS : L.F;
  const int N = task.N, M = task.M, E = cfg.num_epochs;
  const bool accuracy = cfg.eval_type == 1;
  const T max_abs = static_cast<T>(cfg.max_abs_error);
  if (preds) std::fill(preds, preds + static_cast<int64_t>(E) * (N + M), std::numeric_limits<T>::quiet_NaN());
  if (!active) return T(0);
  std::fill(mem, mem + L.total(), T(0));
  Machine<T, FS> m{L.F, mem, scratch, scratch + L.F * L.F, key};
  m.run(prog.code[0], prog.size[0], 0u);
  T* s0 = mem;
  T* s1 = mem + 1;
  T* v0 = mem + L.S;
  const int64_t stride = cfg.la + cfg.lb;
  T best = T(0);
  int64_t step = 1;
  for (int e = 0; e < E; ++e) {
    const int32_t* order = task.orders + static_cast<int64_t>(e) * N;
    for (int j = 0; j < N; ++j, ++step) {
      const T* x = task.train_x + static_cast<int64_t>(order[j]) * F;
      const T y = task.train_y[order[j]];
      std::memcpy(v0, x, sizeof(T) * F);
      *s0 = T(0);
      const uint32_t counter = static_cast<uint32_t>(step * stride);
      m.run(prog.code[1], prog.size[1], counter);
      T p = *s1;
      if (accuracy) {
        p = sigmoid(p);
        *s1 = p;
      }
      if (preds) preds[static_cast<int64_t>(e) * (N + M) + j] = p;
      const T err = std::fabs(y - p);
      if (std::isnan(err) || err > max_abs) return best;  // the first epoch's best is 0
      std::memcpy(v0, x, sizeof(T) * F);
      *s0 = y;
      m.run(prog.code[2], prog.size[2], counter + static_cast<uint32_t>(cfg.la));
    }
    T loss = T(0);
    bool bad = false;
    for (int j = 0; j < M; ++j, ++step) {
      if (bad) continue;  // the reference's validation returns at its first bad example
      const T* x = task.valid_x + static_cast<int64_t>(j) * F;
      const T y = task.valid_y[j];
      std::memcpy(v0, x, sizeof(T) * F);
      *s0 = T(0);
      const uint32_t counter = static_cast<uint32_t>(step * stride);
      m.run(prog.code[1], prog.size[1], counter);
      const T p = *s1;
      if (preds) preds[static_cast<int64_t>(e) * (N + M) + N + j] = p;
      if (accuracy) {
        loss += ((y > T(0.5)) != (sigmoid(p) > T(0.5))) ? T(1) : T(0);
      } else {
        const T d = y - p;
        loss += d * d;
        if (std::isnan(d) || std::fabs(d) > max_abs) bad = true;
      }
    }
    T fit = accuracy ? static_cast<T>(T(1) - loss / static_cast<T>(M)) : rms_fitness(loss / static_cast<T>(M));
    if (bad) fit = T(0);
    best = std::max(best, fit);
  }
  return best;
}

// The multi-class harness (docs/automl_zero.md, "Multi-class tasks"; the same steps as the JAX backends):
// v0 = x, s0 = 0 and the label vector v1 = 0 before Predict; in training the softmax of the K logits v2[:K]
// is written back to v2 (zeros beyond K) and a NaN probability stops the pair, then v0 = x, s0 = 0,
// v1 = one-hot(y) and Learn; in validation an example counts as correct when every logit is finite and the
// first largest one is the label. Predictions: K values per step (probabilities, then logits).
template <typename T>
static inline bool softmax_into(T* v, int K, int F) {
  T mx = v[0];
  for (int k = 1; k < K; ++k) mx = (std::isnan(mx) || std::isnan(v[k])) ? std::numeric_limits<T>::quiet_NaN()
                                                                        : std::max(mx, v[k]);
  T total = T(0);
  for (int k = 0; k < K; ++k) {
    v[k] = std::exp(v[k] - mx);
    total = k == 0 ? v[0] : total + v[k];
  }
  bool nan = false;
  for (int k = 0; k < K; ++k) {
    v[k] = v[k] / total;
    nan = nan || std::isnan(v[k]);
  }
  std::fill(v + K, v + F, T(0));
  return !nan;
}

template <typename T>
static inline bool first_argmax_is(const T* z, int K, T label) {
  T best = z[0];
  int index = 0;
  bool finite = std::isfinite(z[0]);
  for (int k = 1; k < K; ++k) {
    if (z[k] > best) {
      best = z[k];
      index = k;
    }
    finite = finite && std::isfinite(z[k]);
  }
  return finite && static_cast<T>(index) == label;
}

template <typename T, int FS>
static T evaluate_pair_multiclass(const DecodedProgram<T>& prog, const TaskView<T>& task, const Config& cfg,
                                  Key key, bool active, T* mem, T* scratch, T* preds /* [E * (N + M) * K] */) {
  const Layout& L = cfg.L;
  const int F = FS ? FS : L.F;
  const int N = task.N, M = task.M, E = cfg.num_epochs, K = cfg.num_classes;
  if (preds) std::fill(preds, preds + static_cast<int64_t>(E) * (N + M) * K, std::numeric_limits<T>::quiet_NaN());
  if (!active) return T(0);
  std::fill(mem, mem + L.total(), T(0));
  Machine<T, FS> m{L.F, mem, scratch, scratch + L.F * L.F, key};
  m.run(prog.code[0], prog.size[0], 0u);
  T* s0 = mem;
  T* v0 = mem + L.S;
  T* v1 = v0 + F;
  T* v2 = v1 + F;
  const int64_t stride = cfg.la + cfg.lb;
  T best = T(0);
  int64_t step = 1;
  for (int e = 0; e < E; ++e) {
    const int32_t* order = task.orders + static_cast<int64_t>(e) * N;
    for (int j = 0; j < N; ++j, ++step) {
      const T* x = task.train_x + static_cast<int64_t>(order[j]) * F;
      const T y = task.train_y[order[j]];
      std::memcpy(v0, x, sizeof(T) * F);
      *s0 = T(0);
      std::fill(v1, v1 + F, T(0));
      const uint32_t counter = static_cast<uint32_t>(step * stride);
      m.run(prog.code[1], prog.size[1], counter);
      const bool ok = softmax_into(v2, K, F);
      if (preds) std::memcpy(preds + (static_cast<int64_t>(e) * (N + M) + j) * K, v2, sizeof(T) * K);
      if (!ok) return best;  // the first epoch's best is 0
      std::memcpy(v0, x, sizeof(T) * F);
      std::fill(v1, v1 + F, T(0));
      const int label = static_cast<int>(y);
      if (label >= 0 && label < F) v1[label] = T(1);
      m.run(prog.code[2], prog.size[2], counter + static_cast<uint32_t>(cfg.la));
    }
    T loss = T(0);
    for (int j = 0; j < M; ++j, ++step) {
      const T* x = task.valid_x + static_cast<int64_t>(j) * F;
      const T y = task.valid_y[j];
      std::memcpy(v0, x, sizeof(T) * F);
      *s0 = T(0);
      std::fill(v1, v1 + F, T(0));
      const uint32_t counter = static_cast<uint32_t>(step * stride);
      m.run(prog.code[1], prog.size[1], counter);
      if (preds) std::memcpy(preds + (static_cast<int64_t>(e) * (N + M) + N + j) * K, v2, sizeof(T) * K);
      loss += first_argmax_is(v2, K, y) ? T(0) : T(1);
    }
    best = std::max(best, static_cast<T>(T(1) - loss / static_cast<T>(M)));
  }
  return best;
}

// ----------------------------------------------------------------------------------------------------------
// XLA's CPU threads run with flush-to-zero and denormals-are-zero set; the reference keeps subnormals, so
// float64 evaluations clear both modes while they compute (on x86-64; elsewhere the mode is left as it is).
struct KeepSubnormals {
#if defined(__x86_64__) || defined(__SSE__)
  unsigned saved;
  KeepSubnormals() : saved(_mm_getcsr()) { _mm_setcsr(saved & ~0x8040u); }  // FTZ 0x8000, DAZ 0x0040
  ~KeepSubnormals() { _mm_setcsr(saved); }
#endif
};

// Which instructions of a program are live (as azjax/zero/liveness.py): a fixed point over the example loop
// gives live_in(Predict) and live_in(Learn), with the harness slots s0 / v0 removed at the component
// boundaries and s1 read after Predict; then one backward pass per component marks its live instructions.
// `buf` holds 5 * (S + V + M) chars of scratch.
// In a multi-class layout the harness also writes the label vector v1, and the prediction read after Predict
// is the vector v2 instead of s1.
static void live_flags(const Liveness& live, const Layout& L, const int32_t* const I[3], const int n[3], char* buf,
                       char* const flags[3], bool multiclass) {
  const int slots = L.S + L.V + L.M;
  char *live_p = buf, *live_l = buf + slots, *tmp = buf + 2 * slots, *out_p = buf + 3 * slots,
       *new_l = buf + 4 * slots;
  const int s0 = 0, v0 = L.S;
  const int v1 = multiclass ? L.S + 1 : v0;  // a harness slot (v0 again when there is no label vector)
  const int target = multiclass ? L.S + 2 : 1;
  std::fill(live_p, live_p + slots, 0);
  std::fill(live_l, live_l + slots, 0);
  for (;;) {
    std::copy(live_p, live_p + slots, new_l);
    new_l[s0] = new_l[v0] = new_l[v1] = 0;
    live.backward(I[2], n[2], new_l, nullptr);
    for (int q = 0; q < slots; ++q) out_p[q] = (new_l[q] || live_p[q]) ? 1 : 0;
    out_p[s0] = out_p[v0] = out_p[v1] = 0;
    out_p[target] = 1;
    live.backward(I[1], n[1], out_p, nullptr);
    const bool changed = !std::equal(out_p, out_p + slots, live_p) || !std::equal(new_l, new_l + slots, live_l);
    std::copy(out_p, out_p + slots, live_p);
    std::copy(new_l, new_l + slots, live_l);
    if (!changed) break;
  }
  std::copy(live_p, live_p + slots, tmp);
  tmp[s0] = tmp[v0] = tmp[v1] = 0;
  live.backward(I[2], n[2], tmp, flags[2]);
  for (int q = 0; q < slots; ++q) tmp[q] = (live_l[q] || live_p[q]) ? 1 : 0;
  tmp[s0] = tmp[v0] = tmp[v1] = 0;
  tmp[target] = 1;
  live.backward(I[1], n[1], tmp, flags[1]);
  std::copy(live_p, live_p + slots, tmp);
  tmp[s0] = tmp[v0] = tmp[v1] = 0;
  live.backward(I[0], n[0], tmp, flags[0]);
}

// ----------------------------------------------------------------------------------------------------------
template <typename T, int FS>
static void evaluate_batch(const Config& cfg, int P, int T_, const int32_t* const ins[3], const T* const data[3],
                           const int32_t* const sizes[3], const int Ls[3], bool prune, const TaskView<T>& task0,
                           int64_t task_x_stride, int64_t task_y_stride, int64_t valid_x_stride,
                           int64_t valid_y_stride, int64_t order_stride, const uint32_t* keys, bool base_key,
                           const int32_t* active, T* fitness, T* preds, int64_t preds_per_pair,
                           uint64_t* fingerprints) {
  const Layout& L = cfg.L;
  Pool& pool = Pool::get();
  const int threads = pool.size();
  const int total_len = Ls[0] + Ls[1] + Ls[2];
  // Buffers persist per calling thread and only grow: a fresh multi-megabyte allocation per call costs page
  // faults that rival the evaluation of a small batch.
  static thread_local std::vector<Instr<T>> tl_arena;
  auto& arena = tl_arena;  // lambdas run on worker threads: use the caller's buffers
  static thread_local std::vector<DecodedProgram<T>> tl_progs;
  auto& progs = tl_progs;  // lambdas run on worker threads: use the caller's buffers
  grow(arena, static_cast<size_t>(P) * std::max(total_len, 1));
  grow(progs, static_cast<size_t>(P));
  const int slots = L.S + L.V + L.M;
  // Per-thread scratch of the liveness analysis: live sets and per-instruction flags.
  static thread_local std::vector<std::vector<char>> tl_scratch_live;
  auto& scratch_live = tl_scratch_live;  // lambdas run on worker threads: use the caller's buffers
  grow(scratch_live, static_cast<size_t>(threads));
  for (auto& v : scratch_live) grow(v, static_cast<size_t>(5 * slots + 3 * (total_len + 3)));
  Liveness live(L);
  auto decode_program = [&](int64_t pi, int thread) {
    const int p = static_cast<int>(pi);
    DecodedProgram<T>& dp = progs[p];
    Instr<T>* out = arena.data() + static_cast<int64_t>(p) * total_len;
    if (!active[p]) {  // batch padding: nothing runs
      for (int c = 0; c < 3; ++c) { dp.code[c] = out; dp.size[c] = 0; }
      return;
    }
    const int32_t* I[3];
    int n[3];
    for (int c = 0; c < 3; ++c) {
      I[c] = ins[c] + static_cast<int64_t>(p) * Ls[c] * 4;
      n[c] = std::max(0, std::min(sizes[c][p], Ls[c]));
    }
    char* buf = scratch_live[thread].data();
    char* flags[3] = {buf + 5 * slots, buf + 5 * slots + Ls[0] + 1, buf + 5 * slots + Ls[0] + Ls[1] + 2};
    if (prune) live_flags(live, L, I, n, buf, flags, cfg.eval_type == 2);
    for (int c = 0; c < 3; ++c) {
      dp.code[c] = out;
      dp.size[c] = decode<T>(I[c], data[c] + static_cast<int64_t>(p) * Ls[c] * 3, n[c], prune ? flags[c] : nullptr,
                             L, out);
      out += dp.size[c];
    }
  };
  std::function<void(int64_t, int)> decode_fn = decode_program;
  if (P < 64 || threads == 1 || !pool.try_parallel_for(P, decode_fn)) {
    for (int64_t p = 0; p < P; ++p) decode_program(p, 0);
  }
  const int64_t pairs = static_cast<int64_t>(P) * T_;
  const int mem_size = L.total();
  const int scratch_size = 2 * L.F * L.F;  // op results, and matrices in column-major order
  static thread_local std::vector<std::vector<T>> tl_mems;
  auto& mems = tl_mems;  // lambdas run on worker threads: use the caller's buffers
  grow(mems, static_cast<size_t>(threads));
  for (auto& v : mems) grow(v, static_cast<size_t>(mem_size + scratch_size + 1));
  static thread_local std::vector<std::vector<T>> tl_fp_preds;
  static thread_local std::vector<std::vector<double>> tl_fp_errors;
  auto& fp_preds = tl_fp_preds;  // lambdas run on worker threads: use the caller's buffers
  auto& fp_errors = tl_fp_errors;
  if (fingerprints) {
    grow(fp_preds, static_cast<size_t>(threads));
    grow(fp_errors, static_cast<size_t>(threads));
    for (auto& v : fp_preds) grow(v, static_cast<size_t>(task0.N + task0.M));
    for (auto& v : fp_errors) grow(v, static_cast<size_t>(task0.N + task0.M));
  }
  auto job = [&](int64_t i, int thread) {
    const int p = static_cast<int>(i / T_), t = static_cast<int>(i % T_);
    TaskView<T> task = task0;
    task.train_x += t * task_x_stride;
    task.train_y += t * task_y_stride;
    task.valid_x += t * valid_x_stride;
    task.valid_y += t * valid_y_stride;
    task.orders += t * order_stride;
    // Lane keys [P, T, 2], or one base key whose lane keys (the key rule) are derived here, for the pairs
    // that run.
    const Key key = !base_key ? Key{keys[2 * i], keys[2 * i + 1]}
                    : active[p] ? fold_in(fold_in(Key{keys[0], keys[1]}, static_cast<uint32_t>(p)),
                                          static_cast<uint32_t>(t))
                                : Key{0u, 0u};
    T* mem = mems[thread].data();
    // float64 keeps subnormals, as the reference; float32 (an azjax mode, no reference) keeps XLA's
    // flush-to-zero, like the XLA backends, and its speed when values underflow.
    std::optional<KeepSubnormals> ieee;
    if constexpr (sizeof(T) == 8) ieee.emplace();
    if (fingerprints) {
      // The FEC probe (one epoch): errors as fec.fingerprints gets them from the predictions, hashed here.
      // Batch padding gets zero words (nothing reads them).
      if (!active[p]) {
        std::fill(fingerprints + 2 * i, fingerprints + 2 * i + 2, uint64_t{0});
        return;
      }
      T* pred = fp_preds[thread].data();
      double* err = fp_errors[thread].data();
      fitness[i] = evaluate_pair<T, FS>(progs[p], task, cfg, key, active[p] != 0, mem, mem + mem_size, pred);
      const int N = task.N, M = task.M;
      for (int j = 0; j < N; ++j) err[j] = static_cast<double>(std::fabs(task.train_y[j] - pred[j]));
      for (int j = 0; j < M; ++j) {
        const T y = task.valid_y[j], q = pred[N + j];
        err[N + j] = cfg.eval_type == 1 ? ((y > T(0.5)) == (sigmoid(q) > T(0.5)) ? 1.0 : 0.0)
                                        : static_cast<double>(std::fabs(y - q));
      }
      azjax_fec_fingerprint_lane(err, err + N, N, M, t, cfg.fingerprint_steps, fingerprints + 2 * i);
      return;
    }
    if (cfg.eval_type == 2) {
      fitness[i] = evaluate_pair_multiclass<T, FS>(progs[p], task, cfg, key, active[p] != 0, mem, mem + mem_size,
                                                   preds ? preds + i * preds_per_pair : nullptr);
      return;
    }
    fitness[i] = evaluate_pair<T, FS>(progs[p], task, cfg, key, active[p] != 0, mem, mem + mem_size,
                                      preds ? preds + i * preds_per_pair : nullptr);
  };
  std::function<void(int64_t, int)> fn = job;
  if (pairs < 2 || threads == 1 || !pool.try_parallel_for(pairs, fn)) {
    for (int64_t i = 0; i < pairs; ++i) job(i, 0);
  }
}

// evaluate_batch with the feature count as a compile-time constant where it is a common one.
template <typename T>
static void evaluate_batch_for_features(const Config& cfg, int P, int T_, const int32_t* const ins[3],
                                        const T* const data[3], const int32_t* const sizes[3], const int Ls[3],
                                        bool prune, const TaskView<T>& task, const uint32_t* keys, bool base_key,
                                        const int32_t* active, T* fitness, T* preds, int64_t preds_per_pair,
                                        uint64_t* fingerprints) {
  const int F = cfg.L.F, N = task.N, M = task.M;
  const int64_t xs = static_cast<int64_t>(N) * F, ys = N, vxs = static_cast<int64_t>(M) * F, vys = M,
                os = static_cast<int64_t>(cfg.num_epochs) * N;
#define AZJAX_CASE(FSV)                                                                                    \
  evaluate_batch<T, FSV>(cfg, P, T_, ins, data, sizes, Ls, prune, task, xs, ys, vxs, vys, os, keys, base_key, \
                         active, fitness, preds, preds_per_pair, fingerprints)
  switch (F) {
    case 2: AZJAX_CASE(2); break;
    case 4: AZJAX_CASE(4); break;
    case 8: AZJAX_CASE(8); break;
    case 16: AZJAX_CASE(16); break;
    case 32: AZJAX_CASE(32); break;
    default: AZJAX_CASE(0); break;
  }
#undef AZJAX_CASE
}

template <typename T>
static ffi::Error dispatch(const Config& cfg, ffi::AnyBuffer si, ffi::AnyBuffer sd, ffi::AnyBuffer ss,
                          ffi::AnyBuffer pi, ffi::AnyBuffer pd, ffi::AnyBuffer ps, ffi::AnyBuffer li,
                          ffi::AnyBuffer ld, ffi::AnyBuffer ls, ffi::AnyBuffer tx, ffi::AnyBuffer ty,
                          ffi::AnyBuffer vx, ffi::AnyBuffer vy, ffi::AnyBuffer orders, ffi::AnyBuffer keys,
                          ffi::AnyBuffer active, ffi::Result<ffi::AnyBuffer> fitness,
                          ffi::Result<ffi::AnyBuffer> preds, bool prune) {
  const auto sdims = si.dimensions();
  const auto txd = tx.dimensions();
  const auto vxd = vx.dimensions();
  const int P = static_cast<int>(sdims[0]);
  const int T_ = static_cast<int>(txd[0]);
  const int N = static_cast<int>(txd[1]);
  const int M = static_cast<int>(vxd[1]);
  const int F = static_cast<int>(txd[2]);
  if (F != cfg.L.F) return ffi::Error::InvalidArgument("azjax native: task features do not match the config");
  if (static_cast<int64_t>(orders.element_count()) != static_cast<int64_t>(T_) * cfg.num_epochs * N)
    return ffi::Error::InvalidArgument("azjax native: the example orders are not [T, num_epochs, N]");
  const int32_t* ins[3] = {static_cast<const int32_t*>(si.untyped_data()),
                           static_cast<const int32_t*>(pi.untyped_data()),
                           static_cast<const int32_t*>(li.untyped_data())};
  const T* data[3] = {static_cast<const T*>(sd.untyped_data()), static_cast<const T*>(pd.untyped_data()),
                      static_cast<const T*>(ld.untyped_data())};
  const int32_t* sizes[3] = {static_cast<const int32_t*>(ss.untyped_data()),
                             static_cast<const int32_t*>(ps.untyped_data()),
                             static_cast<const int32_t*>(ls.untyped_data())};
  const int Ls[3] = {static_cast<int>(si.dimensions()[1]), static_cast<int>(pi.dimensions()[1]),
                     static_cast<int>(li.dimensions()[1])};
  TaskView<T> task{static_cast<const T*>(tx.untyped_data()), static_cast<const T*>(ty.untyped_data()),
                   static_cast<const T*>(vx.untyped_data()), static_cast<const T*>(vy.untyped_data()),
                   static_cast<const int32_t*>(orders.untyped_data()), N, M};
  uint64_t* fps = nullptr;
  int64_t per_pair = 0;
  T* preds_ptr = nullptr;
  if (cfg.eval_type == 2 && (cfg.num_classes < 2 || cfg.num_classes > F || cfg.L.V < 3))
    return ffi::Error::InvalidArgument("azjax native: multi-class tasks need 2 <= num_classes <= F and 3 vectors");
  if (cfg.fingerprint_steps > 0) {
    if (cfg.eval_type == 2)
      return ffi::Error::InvalidArgument("azjax native: no kernel fingerprints for multi-class tasks");
    // uint32 [P, T, 4]: two little-endian uint64 words per lane (uint64 arrays need JAX's x64 mode).
    if (cfg.num_epochs != 1 || preds->element_type() != ffi::DataType::U32 ||
        static_cast<int64_t>(preds->element_count()) != 4 * static_cast<int64_t>(P) * T_)
      return ffi::Error::InvalidArgument("azjax native: fingerprints need one epoch and a uint32 [P, T, 4] output");
    fps = static_cast<uint64_t*>(preds->untyped_data());
  } else {
    per_pair = preds->dimensions().size() == 3 ? preds->dimensions()[2] : 0;
    preds_ptr = per_pair > 0 ? static_cast<T*>(preds->untyped_data()) : nullptr;
    const int64_t per_step = cfg.eval_type == 2 ? cfg.num_classes : 1;
    if (preds_ptr && per_pair != static_cast<int64_t>(cfg.num_epochs) * (N + M) * per_step)
      return ffi::Error::InvalidArgument("azjax native: predictions buffer has the wrong size");
  }
  // A base key (1-D): the kernel derives the key rule's lane keys (one XLA argument instead of [P, T, 2]).
  evaluate_batch_for_features<T>(cfg, P, T_, ins, data, sizes, Ls, prune, task,
                                 static_cast<const uint32_t*>(keys.untyped_data()), keys.dimensions().size() == 1,
                                 static_cast<const int32_t*>(active.untyped_data()),
                                 static_cast<T*>(fitness->untyped_data()), preds_ptr, per_pair, fps);
  return ffi::Error::Success();
}

static ffi::Error EvaluateImpl(ffi::AnyBuffer si, ffi::AnyBuffer sd, ffi::AnyBuffer ss, ffi::AnyBuffer pi,
                               ffi::AnyBuffer pd, ffi::AnyBuffer ps, ffi::AnyBuffer li, ffi::AnyBuffer ld,
                               ffi::AnyBuffer ls, ffi::AnyBuffer tx, ffi::AnyBuffer ty, ffi::AnyBuffer vx,
                               ffi::AnyBuffer vy, ffi::AnyBuffer orders, ffi::AnyBuffer keys,
                               ffi::AnyBuffer active, ffi::Result<ffi::AnyBuffer> fitness,
                               ffi::Result<ffi::AnyBuffer> preds, int64_t num_scalars, int64_t num_vectors,
                               int64_t num_matrices, int64_t features, int64_t eval_type, int64_t num_epochs,
                               double max_abs_error, int64_t la, int64_t lb, bool prune,
                               int64_t fingerprint_steps, int64_t num_classes) {
  const Config cfg = make_config(num_scalars, num_vectors, num_matrices, features, eval_type, num_classes,
                                 num_epochs, max_abs_error, la, lb, fingerprint_steps);
  const auto dt = tx.element_type();
  if (dt == ffi::DataType::F32)
    return dispatch<float>(cfg, si, sd, ss, pi, pd, ps, li, ld, ls, tx, ty, vx, vy, orders, keys, active,
                           fitness, preds, prune);
  if (dt == ffi::DataType::F64)
    return dispatch<double>(cfg, si, sd, ss, pi, pd, ps, li, ld, ls, tx, ty, vx, vy, orders, keys, active,
                            fitness, preds, prune);
  return ffi::Error::InvalidArgument("azjax native: task arrays must be float32 or float64");
}

}  // namespace azjax_native

namespace azjax_native {
template <typename T>
static int evaluate_host(const Config& cfg, const int32_t* const ins[3], const void* const data_in[3],
                         const int32_t* const sizes[3], const int Ls[3], int P, int T_, int N, int M,
                         const void* train_x, const void* train_y, const void* valid_x, const void* valid_y,
                         const int32_t* orders, const uint32_t* key, const int32_t* active, bool prune,
                         void* fitness, uint64_t* fingerprints) {
  const T* data[3] = {static_cast<const T*>(data_in[0]), static_cast<const T*>(data_in[1]),
                      static_cast<const T*>(data_in[2])};
  const TaskView<T> task{static_cast<const T*>(train_x), static_cast<const T*>(train_y),
                         static_cast<const T*>(valid_x), static_cast<const T*>(valid_y), orders, N, M};
  evaluate_batch_for_features<T>(cfg, P, T_, ins, data, sizes, Ls, prune, task, key, true, active,
                                 static_cast<T*>(fitness), nullptr, 0, fingerprints);
  return 0;
}
}  // namespace azjax_native

// The kernel without XLA, for host-side callers (search_evaluator.ProgramEvaluator on the CPU): NumPy buffers
// in, fitness [P, T] (or FEC fingerprints [P, T, 2] when fingerprint_steps > 0) out, lane keys derived from
// the base `key` [2] by the key rule; no padding to a compiled shape and no argument transfers. Programs are
// [P, L_c, 4] int32 / [P, L_c, 3] constants / [P] sizes per component; `layout` is {S, V, M, F};
// `dtype_bytes` 4 or 8 for the constants, task arrays and fitness. Returns 0, or 1 for a request the kernel
// does not support.
extern "C" int azjax_native_evaluate_host(const int32_t* const* ins, const void* const* data,
                                          const int32_t* const* sizes, const int64_t* lengths, int64_t P,
                                          int64_t T, int64_t N, int64_t M, const void* train_x,
                                          const void* train_y, const void* valid_x, const void* valid_y,
                                          const int32_t* orders, const uint32_t* key, const int32_t* active,
                                          int64_t dtype_bytes, const int64_t* layout, int64_t eval_type,
                                          int64_t num_classes, int64_t num_epochs, double max_abs_error, int64_t la,
                                          int64_t lb, int64_t prune, int64_t fingerprint_steps, void* fitness,
                                          uint64_t* fingerprints) {
  using namespace azjax_native;
  const Config cfg = make_config(layout[0], layout[1], layout[2], layout[3], eval_type, num_classes, num_epochs,
                                 max_abs_error, la, lb, fingerprint_steps);
  if (cfg.eval_type == 2 && (cfg.num_classes < 2 || cfg.num_classes > cfg.L.F || cfg.L.V < 3)) return 1;
  if (fingerprint_steps > 0 && (cfg.eval_type == 2 || cfg.num_epochs != 1 || fingerprints == nullptr)) return 1;
  const int Ls[3] = {static_cast<int>(lengths[0]), static_cast<int>(lengths[1]), static_cast<int>(lengths[2])};
  const int32_t* I[3] = {ins[0], ins[1], ins[2]};
  const int32_t* S[3] = {sizes[0], sizes[1], sizes[2]};
  uint64_t* fps = fingerprint_steps > 0 ? fingerprints : nullptr;
  const int p = static_cast<int>(P), t = static_cast<int>(T), n = static_cast<int>(N), m = static_cast<int>(M);
  if (dtype_bytes == 4)
    return evaluate_host<float>(cfg, I, data, S, Ls, p, t, n, m, train_x, train_y, valid_x, valid_y, orders, key,
                                active, prune != 0, fitness, fps);
  if (dtype_bytes == 8)
    return evaluate_host<double>(cfg, I, data, S, Ls, p, t, n, m, train_x, train_y, valid_x, valid_y, orders,
                                 key, active, prune != 0, fitness, fps);
  return 1;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(AzjaxZeroEvaluate, azjax_native::EvaluateImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // setup instructions [P, Ls, 4] int32
                                  .Arg<ffi::AnyBuffer>()  // setup data [P, Ls, 3]
                                  .Arg<ffi::AnyBuffer>()  // setup size [P] int32
                                  .Arg<ffi::AnyBuffer>()  // predict ...
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()  // learn ...
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()  // train_x [T, N, F]
                                  .Arg<ffi::AnyBuffer>()  // train_y [T, N]
                                  .Arg<ffi::AnyBuffer>()  // valid_x [T, M, F]
                                  .Arg<ffi::AnyBuffer>()  // valid_y [T, M]
                                  .Arg<ffi::AnyBuffer>()  // orders [T, E, N] int32
                                  .Arg<ffi::AnyBuffer>()  // lane keys [P, T, 2] or a base key [2], uint32
                                  .Arg<ffi::AnyBuffer>()  // active [P] int32
                                  .Ret<ffi::AnyBuffer>()  // fitness [P, T]
                                  .Ret<ffi::AnyBuffer>()  // predictions [P, T, E * (N + M)] or [P, T, 0],
                                                          // or fingerprints, uint32 [P, T, 4]
                                  .Attr<int64_t>("num_scalars")
                                  .Attr<int64_t>("num_vectors")
                                  .Attr<int64_t>("num_matrices")
                                  .Attr<int64_t>("features")
                                  .Attr<int64_t>("eval_type")
                                  .Attr<int64_t>("num_epochs")
                                  .Attr<double>("max_abs_error")
                                  .Attr<int64_t>("la")
                                  .Attr<int64_t>("lb")
                                  .Attr<bool>("prune")
                                  .Attr<int64_t>("fingerprint_steps")
                                  .Attr<int64_t>("num_classes"));

// The op-type table, for the test that keeps it equal to azjax/zero/ops.py's.
extern "C" int azjax_native_op_table(int8_t* out, int capacity) {
  if (capacity < 6 * azjax_native::NUM_OPS) return -1;
  for (int i = 0; i < azjax_native::NUM_OPS; ++i) {
    out[6 * i] = azjax_native::kOpTable[i].in1;
    out[6 * i + 1] = azjax_native::kOpTable[i].in2;
    out[6 * i + 2] = azjax_native::kOpTable[i].out;
    out[6 * i + 3] = azjax_native::kOpTable[i].reads_output ? 1 : 0;
    out[6 * i + 4] = azjax_native::kOpTable[i].float32_slots;
    out[6 * i + 5] = azjax_native::kOpTable[i].index_slots;
  }
  return azjax_native::NUM_OPS;
}

extern "C" int azjax_native_num_threads() { return azjax_native::Pool::get().size(); }

namespace azjax_native {
static inline bool is_random_op(int op) {
  return op == SCALAR_UNIFORM_SET || op == VECTOR_UNIFORM_SET || op == MATRIX_UNIFORM_SET ||
         op == SCALAR_GAUSSIAN_SET || op == VECTOR_GAUSSIAN_SET || op == MATRIX_GAUSSIAN_SET;
}
}  // namespace azjax_native

// A 128-bit key of what the kernel executes for each program with liveness pruning: the live instructions
// (component, position, op, addresses and constant bytes). Programs with equal keys give equal outputs on
// equal lanes; `has_random` marks programs with a live random op, whose outputs also depend on the lane key
// (so on the program's row in the batch). `data` are [P, L_c, 3] of `data_bytes` (4 or 8) bytes.
extern "C" void azjax_native_live_code_keys(const int32_t* const* ins, const void* const* data,
                                            const int32_t* const* sizes, const int64_t* lengths, int64_t P,
                                            int64_t num_scalars, int64_t num_vectors, int64_t num_matrices,
                                            int64_t num_classes, int64_t data_bytes, uint64_t* keys,
                                            uint8_t* has_random) {
  using namespace azjax_native;
  const Layout L{static_cast<int>(num_scalars), static_cast<int>(num_vectors), static_cast<int>(num_matrices), 0};
  const Liveness live(L);
  const int slots = L.S + L.V + L.M;
  const int Ls[3] = {static_cast<int>(lengths[0]), static_cast<int>(lengths[1]), static_cast<int>(lengths[2])};
  Pool& pool = Pool::get();
  const size_t width = static_cast<size_t>(5 * slots + Ls[0] + Ls[1] + Ls[2] + 3);
  std::vector<std::vector<char>> bufs(static_cast<size_t>(pool.size()), std::vector<char>(width));
  auto one = [&](int64_t p, int thread) {
    char* buf = bufs[thread].data();
    char* flags[3] = {buf + 5 * slots, buf + 5 * slots + Ls[0] + 1, buf + 5 * slots + Ls[0] + Ls[1] + 2};
    const int32_t* I[3];
    int n[3];
    for (int c = 0; c < 3; ++c) {
      I[c] = ins[c] + p * Ls[c] * 4;
      n[c] = std::max(0, std::min(sizes[c][p], Ls[c]));
    }
    live_flags(live, L, I, n, buf, flags, num_classes >= 2);
    azjax_hash::Hash128 h;
    bool random = false;
    auto add = [&](uint64_t w) { h.add(w); };
    for (int c = 0; c < 3; ++c) {
      const unsigned char* d = static_cast<const unsigned char*>(data[c]) + p * Ls[c] * 3 * data_bytes;
      for (int k = 0; k < n[c]; ++k) {
        if (!flags[c][k]) continue;
        const int32_t* x = I[c] + 4 * k;
        random = random || is_random_op(x[0]);
        add((static_cast<uint64_t>(c) << 32) | static_cast<uint32_t>(k));
        add((static_cast<uint64_t>(static_cast<uint32_t>(x[0])) << 32) | static_cast<uint32_t>(x[1]));
        add((static_cast<uint64_t>(static_cast<uint32_t>(x[2])) << 32) | static_cast<uint32_t>(x[3]));
        for (int j = 0; j < 3; ++j) {
          uint64_t w = 0;
          std::memcpy(&w, d + (static_cast<int64_t>(k) * 3 + j) * data_bytes, data_bytes);
          add(w);
        }
      }
    }
    add(h.count);  // the number of words, so a prefix never collides with a longer sequence by construction
    keys[2 * p] = h.h1;
    keys[2 * p + 1] = h.h2;
    has_random[p] = random ? 1 : 0;
  };
  std::function<void(int64_t, int)> fn = one;
  if (P < 64 || pool.size() == 1 || !pool.try_parallel_for(P, fn)) {
    for (int64_t p = 0; p < P; ++p) one(p, 0);
  }
}
