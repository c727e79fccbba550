// The control part of one AutoML-Zero mutation per batch element, as an XLA FFI custom call on the CPU.
//
// `azjax/zero/mutations.py` is the definition: it computes the constant-scaling factor in XLA (a
// transcendental function) and either applies the mutation in XLA or calls this kernel. The kernel draws the
// uniforms it reads from the mutation's key exactly as jax.random.uniform does (threefry.h; or takes XLA's
// draws), and otherwise only picks, copies, shifts and compares, plus the exact float operations of the XLA
// code (one multiply per pick, fresh constants from exact products, one multiply per scaled constant,
// float32 rounding in the canonical form), so both give the same bits
// (docs/backends.md, "Native mutations"). Every table it reads (the per-op ALTER_PARAM rules, the address
// banks, the canonical-form rules) comes from Python as an attribute: nothing here restates the
// instruction set.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#include "pool.h"
#include "threefry.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace azjax_mutation {

// Columns of the per-op ALTER_PARAM table (mutations._OP_INFO).
constexpr int kTIn1 = 0, kNParams = 3, kField0 = 4, kNSub = 7, kSlot0 = 8, kKind0 = 11, kIsUniform = 14;
constexpr int kInfoWidth = 15;
constexpr int kRuleWidth = 12;  // program._CANONICAL_RULES
// Scalar draws (mutations._U_*).
constexpr int kUComponent = 1, kUPos = 2, kURemove = 3, kUParam = 4, kUSub = 5, kUAddr = 6, kUIndex = 7,
              kUFlip = 8;
constexpr int kNumScalarDraws = 12;
constexpr int64_t kMaxRows = 256;  // the longest component the kernel takes
// Branch codes (mutations.MUTATION_TYPES ids).
enum Branch { kAlterParam = 0, kRandomizeInstruction = 1, kRandomizeComponent = 2, kIdentity = 3, kInsert = 4,
              kRemove = 5, kTrade = 6, kRandomizeAlgorithm = 7 };

struct Tables {
  const int64_t* info;      // [num_ops, 15]
  int64_t num_ops;
  const int64_t* rules;     // [num_ops, 12]
  const int64_t* address;   // [3, 4]: input bank size, lowest writable output, writable count per type code
  const int64_t* mutable_components;  // the components that may be mutated (or {0})
  int64_t num_mutable;
  const int64_t* size_min;  // [3]
  const int64_t* size_max;  // [3]
  const int64_t* type_ids;  // per type index: the MUTATION_TYPES id
  int64_t num_types;
  const int64_t* is_mutable;  // [3]
  int64_t features;
  const int64_t* op_table;  // [3, width]: the ops each component may draw (edge-padded)
  int64_t op_width;
  const int64_t* op_counts;  // [3]
  const double* data_low;    // [num_ops, 3]: fresh constants are low + (high - low) * u
  const double* data_high;
};

// `pick` of random_programs.py: floor(u * n) in the draws' precision, clipped to [0, max(n - 1, 0)].
template <typename T>
static inline int64_t pick(T u, int64_t n) {
  T scaled = std::floor(u * static_cast<T>(n));
  int64_t i = static_cast<int64_t>(static_cast<int32_t>(scaled));
  return std::min<int64_t>(std::max<int64_t>(i, 0), std::max<int64_t>(n - 1, 0));
}

// XLA's minimum/maximum (IEEE 754-2019 minimum/maximum): NaN wins, and -0 < +0.
template <typename T>
static inline T xla_min(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) ? a : b;
  if (a == b) return std::signbit(a) ? a : b;
  return a < b ? a : b;
}
template <typename T>
static inline T xla_max(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) ? a : b;
  if (a == b) return std::signbit(a) ? b : a;
  return a > b ? a : b;
}

// The uniform draws of one mutation (mutations._draws): given by XLA, or drawn here from the mutation's key
// as jax.random.uniform draws them (threefry.h), only where they are read.
template <typename T>
struct Draws {
  const T* dense;  // [12 + 3 * L * 7], or null: draw from `key`
  azjax_threefry::Key key;
  T operator[](int64_t i) const {
    return dense ? dense[i] : azjax_threefry::uniform01<T>(key, static_cast<uint32_t>(i));
  }
};

// One component being mutated: rows [L, 4] / [L, 3] and its size.
template <typename T>
struct Rows {
  int32_t* ins;
  T* data;
  int32_t size;
};

// The XLA code reads a row at a traced position as a masked sum, which turns -0 into +0; so does this.
template <typename T>
static inline T read_zero(T v) { return v + T(0); }

template <typename T>
static void insert_row(Rows<T>& c, int64_t L, int64_t pos, const int32_t* fresh_ins, const T* fresh_data,
                       int32_t* tmp_ins, T* tmp_data) {
  // L + 1 rows: [0, pos) kept, pos new, (pos, L] shifted down by one.
  for (int64_t i = 0; i <= L; ++i) {
    const int32_t* si = i < pos ? c.ins + 4 * i : (i == pos ? fresh_ins : c.ins + 4 * (i - 1));
    const T* sd = i < pos ? c.data + 3 * i : (i == pos ? fresh_data : c.data + 3 * (i - 1));
    std::memcpy(tmp_ins + 4 * i, si, 4 * sizeof(int32_t));
    std::memcpy(tmp_data + 3 * i, sd, 3 * sizeof(T));
  }
}

template <typename T>
static void remove_row(int32_t* ins, T* data, int64_t rows, int64_t pos) {
  // Rows [pos, rows - 1) shift up by one; the last row stays (it is past the size).
  for (int64_t i = std::max<int64_t>(pos, 0); i + 1 < rows; ++i) {
    std::memcpy(ins + 4 * i, ins + 4 * (i + 1), 4 * sizeof(int32_t));
    std::memcpy(data + 3 * i, data + 3 * (i + 1), 3 * sizeof(T));
  }
}

// random_programs.instructions_from_uniforms for one row: the op uniformly among the component's, addresses
// uniformly over their banks (outputs over the writable ones), constants uniformly over their ranges. The
// ranges' widths are 1 or 2, so (high - low) * u is exact and the sum rounds once, as in XLA with or
// without a fused multiply-add (tests/zero/test_native_mutations.py checks every op).
template <typename T>
static void fresh_row(const Tables& t, int64_t comp, const T* u /* its 7 draws */, int32_t* ins, T* data) {
  const int64_t op = t.op_table[comp * t.op_width + pick(u[0], t.op_counts[comp])];
  const int64_t* info = t.info + kInfoWidth * op;
  auto column = [](int64_t type) { return type < 0 ? type + 4 : type; };
  const int64_t t1 = column(info[kTIn1]), t2 = column(info[kTIn1 + 1]), to = column(info[kTIn1 + 2]);
  ins[0] = static_cast<int32_t>(op);
  ins[1] = static_cast<int32_t>(pick(u[1], t.address[t1]));
  ins[2] = static_cast<int32_t>(pick(u[2], t.address[t2]));
  ins[3] = static_cast<int32_t>(t.address[4 + to] + pick(u[3], t.address[8 + to]));
  for (int k = 0; k < 3; ++k) {
    const T low = static_cast<T>(t.data_low[op * 3 + k]), high = static_cast<T>(t.data_high[op * 3 + k]);
    data[k] = low + (high - low) * u[4 + k];
  }
}

// Rows [0, n) of the component's L fresh rows (the draws' layout has L rows per component; only the rows a
// mutation keeps are drawn).
template <typename T>
static void fresh_rows(const Tables& t, int64_t comp, int64_t L, int64_t n, const Draws<T>& r, int32_t* ins,
                       T* data) {
  constexpr int64_t kChunk = 32;  // rows drawn at once
  T u[7 * kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t rows = std::min(kChunk, n - start);
    const int64_t first = kNumScalarDraws + (comp * L + start) * 7;
    if (r.dense) {
      std::memcpy(u, r.dense + first, sizeof(T) * 7 * rows);
    } else {
      azjax_threefry::uniform01_range<T>(r.key, static_cast<uint32_t>(first), static_cast<int>(7 * rows), u);
    }
    for (int64_t i = 0; i < rows; ++i)
      fresh_row(t, comp, u + 7 * i, ins + 4 * (start + i), data + 3 * (start + i));
  }
}

template <typename T>
static void alter_param(const Tables& t, Rows<T>& c, const Draws<T>& r, T factor) {
  const int64_t pos = pick(r[kUPos], c.size);
  int32_t* row = c.ins + 4 * pos;
  T* d = c.data + 3 * pos;
  const int32_t op = row[0];
  const int64_t* info = t.info + kInfoWidth * std::min<int64_t>(std::max<int64_t>(op, 0), t.num_ops - 1);
  const int64_t field = info[kField0 + pick(r[kUParam], info[kNParams])];
  int64_t type = info[kTIn1 + std::min<int64_t>(std::max<int64_t>(field - 1, 0), 2)];
  if (type < 0) type += 4;  // "no operand" reads the table's last column, as a negative index does in XLA
  const int64_t bank_size = t.address[type], out_low = t.address[4 + type], out_count = t.address[8 + type];
  const int64_t new_addr = field == 3 ? out_low + pick(r[kUAddr], out_count) : pick(r[kUAddr], bank_size);
  const int64_t sub = pick(r[kUSub], info[kNSub]);
  const int64_t slot = info[kSlot0 + sub], kind = info[kKind0 + sub];
  T dv[3] = {read_zero(d[0]), read_zero(d[1]), read_zero(d[2])};
  T nd[3] = {dv[0], dv[1], dv[2]};
  if (slot >= 0 && slot < 3) {
    const T value = dv[slot];
    T altered;
    if (kind == 0) {
      altered = r[kUIndex];
    } else {
      const bool flip = kind == 1 && r[kUFlip] < static_cast<T>(0.1);
      altered = flip ? -value : value * factor;
    }
    nd[slot] = altered;
  }
  if (info[kIsUniform] == 1) {
    const T low = xla_min(nd[0], nd[1]), high = xla_max(nd[0], nd[1]);
    nd[0] = low;
    nd[1] = high;
  }
  const bool is_data = field < 0;
  const bool change_row = c.size > 0 && op != 0 && !is_data;
  const bool change_data = c.size > 0 && is_data;
  if (change_row && field >= 0 && field < 4) row[field] = static_cast<int32_t>(new_addr);
  const T* src = change_data ? nd : dv;
  for (int k = 0; k < 3; ++k) d[k] = src[k];
}

// The canonical form of one component's rows (program.canonical_rows).
template <typename T>
static void canonical(const Tables& t, int32_t* ins, T* data, int64_t L, int32_t size, const T* centers) {
  const int64_t F = t.features;
  for (int64_t i = 0; i < L; ++i) {
    int32_t* row = ins + 4 * i;
    T* d = data + 3 * i;
    const int32_t op = i < size ? row[0] : 0;
    const int64_t* rule = t.rules + kRuleWidth * std::min<int64_t>(std::max<int64_t>(op, 0), t.num_ops - 1);
    row[0] = op;
    for (int k = 0; k < 3; ++k)
      if (!rule[k]) row[1 + k] = 0;
    for (int k = 0; k < 3; ++k) {
      const float narrow = static_cast<float>(d[k]);
      T v = rule[9 + k] ? static_cast<T>(narrow) : d[k];
      if (rule[6 + k]) {
        const float scaled = (std::isnan(narrow) ? 0.0f : narrow) * static_cast<float>(F);
        float f = std::floor(scaled);
        f = std::min(std::max(f, 0.0f), static_cast<float>(F - 1));
        v = centers[static_cast<int32_t>(f)];
      }
      d[k] = rule[3 + k] ? v : T(0);
    }
  }
}

// One mutation on a program held stacked: ins3 [3, L, 4], data3 [3, L, 3], size3 [3], each component padded
// with zero rows to the longest one's length L (as mutations._stack_components pads; the draws' layout follows
// L too).
template <typename T>
static void mutate_one(const Tables& t, int64_t L, const int64_t len[3], int32_t* ins3, T* data3, int32_t* size3, const Draws<T>& r,
                       T factor, int32_t type_index, const T* centers) {
  // Scratch for the one-row-longer intermediate of insert/trade, and the fresh rows.
  int32_t stack_ins[4 * (kMaxRows + 1)];
  T stack_data[3 * (kMaxRows + 1)];
  int32_t fi[4 * (kMaxRows + 1)];
  T fd[3 * (kMaxRows + 1)];
  const int64_t type_id = t.type_ids[std::min<int64_t>(std::max<int64_t>(type_index, 0), t.num_types - 1)];
  const int64_t comp = t.mutable_components[pick(r[kUComponent], std::max<int64_t>(t.num_mutable, 1))];
  Rows<T> c{ins3 + comp * L * 4, data3 + comp * L * 3, size3[comp]};
  // The fresh rows of this component that the type reads (one row, or all for a randomized component),
  // read as the XLA code reads them (masked sum: -0 becomes +0).
  const bool all_rows = type_id == kRandomizeComponent || type_id == kRandomizeAlgorithm;
  const bool one_row = type_id == kRandomizeInstruction || type_id == kInsert || type_id == kTrade;
  const int64_t fresh = all_rows ? len[comp] : (one_row ? 1 : 0);  // rows past len[comp] are dropped
  fresh_rows(t, comp, L, fresh, r, fi, fd);
  for (int64_t k = 0; k < 3 * fresh; ++k) fd[k] = read_zero(fd[k]);
  // The component's own rows are read the same way.
  for (int64_t k = 0; k < 3 * L; ++k) c.data[k] = read_zero(c.data[k]);
  switch (type_id) {
    case kAlterParam:
      alter_param(t, c, r, factor);
      break;
    case kRandomizeInstruction:
      if (c.size > 0) {
        const int64_t pos = pick(r[kUPos], c.size);
        std::memcpy(c.ins + 4 * pos, fi, 4 * sizeof(int32_t));
        std::memcpy(c.data + 3 * pos, fd, 3 * sizeof(T));
      }
      break;
    case kRandomizeComponent:
    case kRandomizeAlgorithm:
      std::memcpy(c.ins, fi, 4 * fresh * sizeof(int32_t));
      std::memcpy(c.data, fd, 3 * fresh * sizeof(T));
      break;
    case kInsert:
      if (c.size < t.size_max[comp] - 1) {
        insert_row(c, L, pick(r[kUPos], c.size + 1), fi, fd, stack_ins, stack_data);
        std::memcpy(c.ins, stack_ins, 4 * L * sizeof(int32_t));
        std::memcpy(c.data, stack_data, 3 * L * sizeof(T));
        c.size += 1;
      }
      break;
    case kRemove:
      if (c.size > t.size_min[comp]) {
        remove_row(c.ins, c.data, L, pick(r[kURemove], c.size));
        c.size -= 1;
      }
      break;
    case kTrade: {
      insert_row(c, L, pick(r[kUPos], c.size + 1), fi, fd, stack_ins, stack_data);
      remove_row(stack_ins, stack_data, L + 1, pick(r[kURemove], c.size + 1));
      std::memcpy(c.ins, stack_ins, 4 * L * sizeof(int32_t));
      std::memcpy(c.data, stack_data, 3 * L * sizeof(T));
      break;
    }
    default:  // IDENTITY
      break;
  }
  size3[comp] = c.size;
  if (type_id == kRandomizeAlgorithm) {
    for (int64_t k = 0; k < 3; ++k)
      if (t.is_mutable[k]) fresh_rows(t, k, L, len[k], r, ins3 + k * L * 4, data3 + k * L * 3);
  }
  for (int64_t k = 0; k < 3; ++k) canonical(t, ins3 + k * L * 4, data3 + k * L * 3, L, size3[k], centers);
}

// The batch: each program comes as its three components (Setup, Predict, Learn: instructions [..., L_c, 4],
// constants [..., L_c, 3], size [...]) and leaves the same way; batch elements are independent, so they are
// spread over the shared thread pool.
template <typename T>
static ffi::Error run(const Tables& t, const ffi::AnyBuffer* ins_in, const ffi::AnyBuffer* data_in,
                      const ffi::AnyBuffer* size_in, ffi::AnyBuffer draws, ffi::AnyBuffer factor_in,
                      ffi::AnyBuffer type_in, ffi::AnyBuffer centers_in, ffi::Result<ffi::AnyBuffer>* ins_out,
                      ffi::Result<ffi::AnyBuffer>* data_out, ffi::Result<ffi::AnyBuffer>* size_out) {
  int64_t len[3];
  for (int k = 0; k < 3; ++k) {
    auto dims = ins_out[k]->dimensions();
    if (dims.size() < 2 || dims[dims.size() - 1] != 4)
      return ffi::Error::InvalidArgument("azjax mutation: instructions must be [..., L, 4]");
    len[k] = dims[dims.size() - 2];
  }
  const int64_t L = std::max<int64_t>(std::max(std::max(len[0], len[1]), len[2]), 1);
  if (L > kMaxRows) return ffi::Error::InvalidArgument("azjax mutation: components longer than 256 rows");
  const int64_t B = static_cast<int64_t>(size_out[0]->element_count());
  // Inputs a vmap left unbatched arrive with a leading 1 (vmap_method="expand_dims"): stride 0.
  auto stride = [&](ffi::AnyBuffer b, int64_t elems) -> int64_t {
    const int64_t n = static_cast<int64_t>(b.element_count());
    return n == elems ? 0 : elems;
  };
  auto batch_ok = [&](ffi::AnyBuffer b, int64_t elems) {
    const int64_t n = static_cast<int64_t>(b.element_count());
    return n == elems || n == elems * B;
  };
  // The draws come from XLA ([..., 12 + 3 * L * 7] of T) or as the mutation's key ([..., 2] uint32).
  const bool keyed = draws.element_type() == ffi::DataType::U32;
  const int64_t num_draws = keyed ? 2 : kNumScalarDraws + 7 * 3 * L;
  bool ok = batch_ok(draws, num_draws) && batch_ok(factor_in, 1) && batch_ok(type_in, 1) &&
            static_cast<int64_t>(centers_in.element_count()) == t.features;
  for (int k = 0; k < 3; ++k)
    ok = ok && batch_ok(ins_in[k], len[k] * 4) && batch_ok(data_in[k], len[k] * 3) && batch_ok(size_in[k], 1) &&
         static_cast<int64_t>(ins_out[k]->element_count()) == B * len[k] * 4 &&
         static_cast<int64_t>(data_out[k]->element_count()) == B * len[k] * 3 &&
         static_cast<int64_t>(size_out[k]->element_count()) == B;
  if (!ok) return ffi::Error::InvalidArgument("azjax mutation: inputs disagree in shape");
  const int64_t s_draws = stride(draws, num_draws), s_factor = stride(factor_in, 1), s_type = stride(type_in, 1);
  const T* u = keyed ? nullptr : reinterpret_cast<const T*>(draws.untyped_data());
  const uint32_t* key_words = keyed ? reinterpret_cast<const uint32_t*>(draws.untyped_data()) : nullptr;
  const T* factor = reinterpret_cast<const T*>(factor_in.untyped_data());
  const int32_t* type_index = reinterpret_cast<const int32_t*>(type_in.untyped_data());
  const T* centers = reinterpret_cast<const T*>(centers_in.untyped_data());
  struct Component {
    const int32_t* ins;
    const T* data;
    const int32_t* size;
    int64_t s_ins, s_data, s_size;
    int32_t* out_ins;
    T* out_data;
    int32_t* out_size;
  };
  Component comps[3];
  for (int k = 0; k < 3; ++k)
    comps[k] = {reinterpret_cast<const int32_t*>(ins_in[k].untyped_data()),
                reinterpret_cast<const T*>(data_in[k].untyped_data()),
                reinterpret_cast<const int32_t*>(size_in[k].untyped_data()),
                stride(ins_in[k], len[k] * 4), stride(data_in[k], len[k] * 3), stride(size_in[k], 1),
                reinterpret_cast<int32_t*>(ins_out[k]->untyped_data()),
                reinterpret_cast<T*>(data_out[k]->untyped_data()),
                reinterpret_cast<int32_t*>(size_out[k]->untyped_data())};

  auto one = [&](int64_t b, int /*thread*/) {
    int32_t ins3[3 * kMaxRows * 4];
    T data3[3 * kMaxRows * 3];
    int32_t size3[3];
    for (int k = 0; k < 3; ++k) {  // stack, padding with zero rows
      const Component& c = comps[k];
      std::memcpy(ins3 + k * L * 4, c.ins + b * c.s_ins, len[k] * 4 * sizeof(int32_t));
      std::memcpy(data3 + k * L * 3, c.data + b * c.s_data, len[k] * 3 * sizeof(T));
      std::fill(ins3 + k * L * 4 + len[k] * 4, ins3 + (k + 1) * L * 4, 0);
      std::fill(data3 + k * L * 3 + len[k] * 3, data3 + (k + 1) * L * 3, T(0));
      size3[k] = c.size[b * c.s_size];
    }
    const Draws<T> r = keyed ? Draws<T>{nullptr, {key_words[b * s_draws], key_words[b * s_draws + 1]}}
                             : Draws<T>{u + b * s_draws, {0u, 0u}};
    mutate_one(t, L, len, ins3, data3, size3, r, factor[b * s_factor], type_index[b * s_type], centers);
    for (int k = 0; k < 3; ++k) {  // unstack: the first L_c rows of each component
      const Component& c = comps[k];
      std::memcpy(c.out_ins + b * len[k] * 4, ins3 + k * L * 4, len[k] * 4 * sizeof(int32_t));
      std::memcpy(c.out_data + b * len[k] * 3, data3 + k * L * 3, len[k] * 3 * sizeof(T));
      c.out_size[b] = size3[k];
    }
  };
  // A mutation takes about a microsecond: small batches are not worth waking the pool for.
  const std::function<void(int64_t, int)> fn = one;
  azjax_native::Pool& pool = azjax_native::Pool::get();
  if (B < 64 || pool.size() == 1 || !pool.try_parallel_for(B, fn))
    for (int64_t b = 0; b < B; ++b) one(b, 0);
  return ffi::Error::Success();
}

static ffi::Error MutateImpl(ffi::AnyBuffer ins_s, ffi::AnyBuffer data_s, ffi::AnyBuffer size_s,
                             ffi::AnyBuffer ins_p, ffi::AnyBuffer data_p, ffi::AnyBuffer size_p,
                             ffi::AnyBuffer ins_l, ffi::AnyBuffer data_l, ffi::AnyBuffer size_l,
                             ffi::AnyBuffer draws, ffi::AnyBuffer factor, ffi::AnyBuffer type_index,
                             ffi::AnyBuffer centers, ffi::Result<ffi::AnyBuffer> ins_s_out,
                             ffi::Result<ffi::AnyBuffer> data_s_out, ffi::Result<ffi::AnyBuffer> size_s_out,
                             ffi::Result<ffi::AnyBuffer> ins_p_out, ffi::Result<ffi::AnyBuffer> data_p_out,
                             ffi::Result<ffi::AnyBuffer> size_p_out, ffi::Result<ffi::AnyBuffer> ins_l_out,
                             ffi::Result<ffi::AnyBuffer> data_l_out, ffi::Result<ffi::AnyBuffer> size_l_out,
                             ffi::Span<const int64_t> info, ffi::Span<const int64_t> rules,
                             ffi::Span<const int64_t> address, ffi::Span<const int64_t> mutable_components,
                             ffi::Span<const int64_t> size_min, ffi::Span<const int64_t> size_max,
                             ffi::Span<const int64_t> type_ids, ffi::Span<const int64_t> is_mutable,
                             int64_t features, ffi::Span<const int64_t> op_table,
                             ffi::Span<const int64_t> op_counts, ffi::Span<const double> data_low,
                             ffi::Span<const double> data_high) {
  if (info.size() % kInfoWidth != 0 || rules.size() != info.size() / kInfoWidth * kRuleWidth ||
      address.size() != 12 || size_min.size() != 3 || size_max.size() != 3 || is_mutable.size() != 3 ||
      mutable_components.size() == 0 || type_ids.size() == 0 || features < 1 || op_counts.size() != 3 ||
      op_table.size() == 0 || op_table.size() % 3 != 0 || data_low.size() != info.size() / kInfoWidth * 3 ||
      data_high.size() != data_low.size())
    return ffi::Error::InvalidArgument("azjax mutation: malformed tables");
  Tables t{info.begin(), static_cast<int64_t>(info.size() / kInfoWidth), rules.begin(), address.begin(),
           mutable_components.begin(), static_cast<int64_t>(mutable_components.size()), size_min.begin(),
           size_max.begin(), type_ids.begin(), static_cast<int64_t>(type_ids.size()), is_mutable.begin(),
           features, op_table.begin(), static_cast<int64_t>(op_table.size() / 3), op_counts.begin(),
           data_low.begin(), data_high.begin()};
  const ffi::AnyBuffer ins[3] = {ins_s, ins_p, ins_l}, data[3] = {data_s, data_p, data_l},
                       size[3] = {size_s, size_p, size_l};
  ffi::Result<ffi::AnyBuffer> ins_out[3] = {ins_s_out, ins_p_out, ins_l_out};
  ffi::Result<ffi::AnyBuffer> data_out[3] = {data_s_out, data_p_out, data_l_out};
  ffi::Result<ffi::AnyBuffer> size_out[3] = {size_s_out, size_p_out, size_l_out};
  const ffi::DataType dt = data_s.element_type();
  bool types_ok = (draws.element_type() == dt || draws.element_type() == ffi::DataType::U32) &&
                  factor.element_type() == dt && centers.element_type() == dt &&
                  type_index.element_type() == ffi::DataType::S32;
  for (int k = 0; k < 3; ++k)
    types_ok = types_ok && ins[k].element_type() == ffi::DataType::S32 && data[k].element_type() == dt &&
               size[k].element_type() == ffi::DataType::S32;
  if (!types_ok) return ffi::Error::InvalidArgument("azjax mutation: unexpected dtypes");
  if (dt == ffi::DataType::F32)
    return run<float>(t, ins, data, size, draws, factor, type_index, centers, ins_out, data_out, size_out);
  if (dt == ffi::DataType::F64)
    return run<double>(t, ins, data, size, draws, factor, type_index, centers, ins_out, data_out, size_out);
  return ffi::Error::InvalidArgument("azjax mutation: constants must be float32 or float64");
}

}  // namespace azjax_mutation

XLA_FFI_DEFINE_HANDLER_SYMBOL(AzjaxZeroMutate, azjax_mutation::MutateImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // Setup instructions [..., L_s, 4] int32
                                  .Arg<ffi::AnyBuffer>()  // Setup constants [..., L_s, 3]
                                  .Arg<ffi::AnyBuffer>()  // Setup size [...] int32
                                  .Arg<ffi::AnyBuffer>()  // Predict: the same three
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()  // Learn: the same three
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()  // draws [..., 12 + 3 * L * 7], or key data [..., 2] u32
                                  .Arg<ffi::AnyBuffer>()  // constant-scaling factor [...]
                                  .Arg<ffi::AnyBuffer>()  // type index [...] int32
                                  .Arg<ffi::AnyBuffer>()  // index-fraction centres [F]
                                  .Ret<ffi::AnyBuffer>()  // Setup instructions, constants, size
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()  // Predict
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()  // Learn
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("info")
                                  .Attr<ffi::Span<const int64_t>>("rules")
                                  .Attr<ffi::Span<const int64_t>>("address")
                                  .Attr<ffi::Span<const int64_t>>("mutable_components")
                                  .Attr<ffi::Span<const int64_t>>("size_min")
                                  .Attr<ffi::Span<const int64_t>>("size_max")
                                  .Attr<ffi::Span<const int64_t>>("type_ids")
                                  .Attr<ffi::Span<const int64_t>>("is_mutable")
                                  .Attr<int64_t>("features")
                                  .Attr<ffi::Span<const int64_t>>("op_table")
                                  .Attr<ffi::Span<const int64_t>>("op_counts")
                                  .Attr<ffi::Span<const double>>("data_low")
                                  .Attr<ffi::Span<const double>>("data_high"));
