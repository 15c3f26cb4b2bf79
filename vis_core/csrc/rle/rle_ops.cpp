// vis_core._rle: mask areas and intersections straight from COCO compressed RLE strings.
//
// A plain CPython extension (no torch, so that `python -m vis_core.evaluation` starts without
// importing torch). The evaluator uses it where it is built and pycocotools where it is not; both
// give the same integers on every valid RLE (tests/evaluation compare them).
//
// COCO's compressed RLE: the run lengths of a column-major binary mask, background first, each
// written as little-endian groups of 5 bits, one character per group (value + 48); bit 0x20 says that
// another group follows, and bit 0x10 of the last group is the sign. From the fourth run on, the
// number stored is the difference from the run two places earlier.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace {

struct Decoded {
  int64_t area = 0;   // foreground pixels
  int64_t total = 0;  // pixels covered by all runs
};

// Decodes `s` (length n) into its sums and, with kIntervals, its foreground intervals: the foreground
// runs as [start, end) pixel positions, appended to `out` flattened (s0, e0, s1, e1, ...). Returns an
// empty string on success, else what is wrong. One pass, errors checked once at the end.
template <bool kIntervals>
std::string decode_counts(const char* s, Py_ssize_t n, Decoded* sums, std::vector<int64_t>* out) {
  const auto* chars = reinterpret_cast<const unsigned char*>(s);
  int64_t last[2] = {0, 0};  // the latest background and foreground run lengths
  int64_t area = 0, pos = 0, value = 0, lowest = 0, m = 0;
  int shift = 0;
  unsigned seen = 0;  // OR of every character - 48: above 63 if one is not an RLE character
  for (Py_ssize_t i = 0; i < n; ++i) {
    const unsigned c = static_cast<unsigned>(chars[i]) - 48u;
    seen |= c;
    if (shift > 55) return "a run length is too long";
    value |= static_cast<int64_t>(c & 0x1f) << shift;
    if (c & 0x20) {  // another group follows
      shift += 5;
      continue;
    }
    if (c & 0x10) value |= -(static_cast<int64_t>(1) << (shift + 5));  // sign extension
    const int odd = static_cast<int>(m & 1);
    const int64_t x = value + (m > 2 ? last[odd] : 0);
    last[odd] = x;
    lowest = std::min(lowest, x);
    if (odd) {
      area += x;
      if (kIntervals && x > 0) {
        out->push_back(pos);
        out->push_back(pos + x);
      }
    }
    pos += x;
    ++m;
    value = 0;
    shift = 0;
  }
  if (seen > 63) return "a character is not one of compressed RLE's ('0' to 'o')";
  if (shift != 0) return "the string ends inside a run length";
  if (lowest < 0) return "a run length is negative";
  sums->area = area;
  sums->total = pos;
  return std::string();
}

// Sets `ValueError(k, message)` as the Python error (args: the mask's position and what is wrong).
std::nullptr_t fail(Py_ssize_t k, const std::string& message) {
  PyObject* args = Py_BuildValue("(ns)", k, message.c_str());
  if (args != nullptr) {
    PyErr_SetObject(PyExc_ValueError, args);
    Py_DECREF(args);
  }
  return nullptr;
}

// The characters of an RLE's "counts" (str or bytes). Returns an empty string, or what is wrong.
std::string counts_chars(PyObject* rle, const char** s, Py_ssize_t* n) {
  if (!PyDict_Check(rle)) return std::string("expected an RLE dict, got ") + Py_TYPE(rle)->tp_name;
  PyObject* counts = PyDict_GetItemString(rle, "counts");  // borrowed
  if (counts == nullptr) return "the RLE has no 'counts'";
  if (PyUnicode_Check(counts)) {
    *s = PyUnicode_AsUTF8AndSize(counts, n);
    if (*s != nullptr) return std::string();
    PyErr_Clear();
    return "'counts' is not a valid string";
  }
  if (PyBytes_Check(counts)) {
    *s = PyBytes_AS_STRING(counts);
    *n = PyBytes_GET_SIZE(counts);
    return std::string();
  }
  return std::string("'counts' is ") + Py_TYPE(counts)->tp_name + ", not a compressed RLE string";
}

bool rle_size(PyObject* rle, int64_t* h, int64_t* w) {
  PyObject* size = PyDict_GetItemString(rle, "size");  // borrowed
  if (size == nullptr || !PySequence_Check(size) || PySequence_Size(size) != 2) return false;
  PyObject* hh = PySequence_GetItem(size, 0);
  PyObject* ww = PySequence_GetItem(size, 1);
  bool ok = hh != nullptr && ww != nullptr && PyLong_Check(hh) && PyLong_Check(ww);
  if (ok) {
    *h = PyLong_AsLongLong(hh);
    *w = PyLong_AsLongLong(ww);
  }
  Py_XDECREF(hh);
  Py_XDECREF(ww);
  PyErr_Clear();
  return ok;
}

PyObject* int64_bytes(const std::vector<int64_t>& values) {
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(values.data()),
                                   static_cast<Py_ssize_t>(values.size() * sizeof(int64_t)));
}

PyObject* areas(PyObject*, PyObject* args) {
  PyObject* rles;
  if (!PyArg_ParseTuple(args, "O", &rles)) return nullptr;
  PyObject* seq = PySequence_Fast(rles, "areas() takes a sequence of RLE dicts");
  if (seq == nullptr) return nullptr;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  PyObject** items = PySequence_Fast_ITEMS(seq);
  std::vector<int64_t> result(static_cast<size_t>(n));
  for (Py_ssize_t k = 0; k < n; ++k) {
    const char* s;
    Py_ssize_t len;
    const std::string wrong = counts_chars(items[k], &s, &len);
    if (!wrong.empty()) {
      Py_DECREF(seq);
      return fail(k, wrong);
    }
    int64_t h = 0, w = 0;
    if (!rle_size(items[k], &h, &w)) {
      Py_DECREF(seq);
      return fail(k, "'size' is not [height, width]");
    }
    Decoded sums;
    const std::string error = decode_counts<false>(s, len, &sums, nullptr);
    if (!error.empty()) {
      Py_DECREF(seq);
      return fail(k, error);
    }
    if (sums.total != h * w) {
      Py_DECREF(seq);
      return fail(k,
                  "its runs cover " + std::to_string(sums.total) + " pixels, but its size " +
                      std::to_string(h) + "x" + std::to_string(w) + " has " +
                      std::to_string(h * w));
    }
    result[static_cast<size_t>(k)] = sums.area;
  }
  Py_DECREF(seq);
  return int64_bytes(result);
}

// Reads an int64 buffer (a C-contiguous numpy int64 array) into `view`.
bool int64_view(PyObject* obj, Py_buffer* view, const char* name) {
  if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return false;
  const char* f = view->format;
  const bool is_int64 =
      view->itemsize == 8 && f != nullptr && (f[0] == 'q' || f[0] == 'l' ||
                                               ((f[0] == '<' || f[0] == '=') &&
                                                (f[1] == 'q' || f[1] == 'l')));
  if (!is_int64) {
    PyBuffer_Release(view);
    PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous int64 array", name);
    return false;
  }
  return true;
}

// The foreground intervals of masks of a list of tracks (lists of frames), each decoded on first
// use and stored one after the other in one buffer.
class MaskStore {
 public:
  MaskStore(PyObject* tracks, const char* name, int64_t num_tracks, int64_t num_frames)
      : tracks_(tracks),
        name_(name),
        num_frames_(num_frames),
        slot_(static_cast<size_t>(num_tracks * num_frames), -1) {}

  // Number of track t's frame f in the store (decoded now if new), or -1 with a Python error set.
  int64_t get(int64_t t, int64_t f) {
    int64_t& slot = slot_[static_cast<size_t>(t * num_frames_ + f)];
    if (slot >= 0) return slot;
    PyObject* frames = PySequence_GetItem(tracks_, t);
    if (frames == nullptr) return -1;
    PyObject* rle = PySequence_GetItem(frames, f);
    Py_DECREF(frames);
    if (rle == nullptr) return -1;
    const char* s;
    Py_ssize_t len;
    Decoded sums;
    const size_t begin = data_.size();
    std::string error = counts_chars(rle, &s, &len);
    if (error.empty()) error = decode_counts<true>(s, len, &sums, &data_);
    Py_DECREF(rle);
    if (!error.empty()) {
      PyErr_Format(PyExc_ValueError, "%s %lld, frame %lld: %s", name_, static_cast<long long>(t),
                   static_cast<long long>(f), error.c_str());
      return -1;
    }
    bounds_.push_back(begin);
    bounds_.push_back(data_.size());
    slot = static_cast<int64_t>(bounds_.size() / 2 - 1);
    return slot;
  }

  // [begin, end) of mask i's flattened intervals; valid until the next get().
  const int64_t* begin(int64_t i) const { return data_.data() + bounds_[2 * i]; }
  const int64_t* end(int64_t i) const { return data_.data() + bounds_[2 * i + 1]; }

 private:
  PyObject* tracks_;
  const char* name_;
  int64_t num_frames_;
  std::vector<int64_t> slot_;    // (track, frame) -> mask number, -1 before it is decoded
  std::vector<int64_t> data_;    // intervals of every decoded mask
  std::vector<size_t> bounds_;   // begin, end of each mask in data_
};

// Pixels in both of two sorted lists of disjoint [start, end) intervals (flattened).
int64_t intersect(const int64_t* a, const int64_t* a_end, const int64_t* b, const int64_t* b_end) {
  int64_t total = 0;
  while (a < a_end && b < b_end) {
    const int64_t lo = std::max(a[0], b[0]);
    const int64_t hi = std::min(a[1], b[1]);
    if (hi > lo) total += hi - lo;
    if (a[1] < b[1]) {
      a += 2;
    } else {
      b += 2;
    }
  }
  return total;
}

// 1 + the largest of `n` values, or -1 if one is negative.
int64_t extent(const int64_t* values, Py_ssize_t n) {
  int64_t top = -1;
  for (Py_ssize_t k = 0; k < n; ++k) {
    if (values[k] < 0) return -1;
    top = std::max(top, values[k]);
  }
  return top + 1;
}

PyObject* intersections(PyObject*, PyObject* args) {
  PyObject *dets, *gts, *d_obj, *g_obj, *f_obj;
  if (!PyArg_ParseTuple(args, "OOOOO", &dets, &gts, &d_obj, &g_obj, &f_obj)) return nullptr;
  Py_buffer d_view, g_view, f_view;
  if (!int64_view(d_obj, &d_view, "d")) return nullptr;
  if (!int64_view(g_obj, &g_view, "g")) {
    PyBuffer_Release(&d_view);
    return nullptr;
  }
  if (!int64_view(f_obj, &f_view, "f")) {
    PyBuffer_Release(&d_view);
    PyBuffer_Release(&g_view);
    return nullptr;
  }
  PyObject* result = nullptr;
  const Py_ssize_t n = d_view.len / 8;
  const auto* d = static_cast<const int64_t*>(d_view.buf);
  const auto* g = static_cast<const int64_t*>(g_view.buf);
  const auto* f = static_cast<const int64_t*>(f_view.buf);
  const int64_t num_d = extent(d, n), num_g = extent(g, n), num_f = extent(f, n);
  if (g_view.len / 8 != n || f_view.len / 8 != n) {
    PyErr_SetString(PyExc_ValueError, "d, g and f must have the same length");
  } else if (num_d < 0 || num_g < 0 || num_f < 0) {
    PyErr_SetString(PyExc_ValueError, "d, g and f must not be negative");
  } else {
    MaskStore det_store(dets, "prediction", num_d, num_f);
    MaskStore gt_store(gts, "ground-truth track", num_g, num_f);
    std::vector<int64_t> out(static_cast<size_t>(n));
    bool ok = true;
    for (Py_ssize_t k = 0; k < n && ok; ++k) {
      const int64_t a = det_store.get(d[k], f[k]);
      const int64_t b = a < 0 ? -1 : gt_store.get(g[k], f[k]);
      ok = b >= 0;
      if (ok) {
        out[static_cast<size_t>(k)] =
            intersect(det_store.begin(a), det_store.end(a), gt_store.begin(b), gt_store.end(b));
      }
    }
    if (ok) result = int64_bytes(out);
  }
  PyBuffer_Release(&d_view);
  PyBuffer_Release(&g_view);
  PyBuffer_Release(&f_view);
  return result;
}

PyMethodDef methods[] = {
    {"areas", areas, METH_VARARGS,
     "areas(rles) -> bytes of int64: the foreground pixels of each compressed RLE dict.\n\n"
     "Raises ValueError(k, what is wrong) when mask k is not an RLE dict with a valid compressed\n"
     "string, or its runs do not cover size[0] * size[1] pixels."},
    {"intersections", intersections, METH_VARARGS,
     "intersections(dets, gts, d, g, f) -> bytes of int64.\n\n"
     "dets, gts: lists of tracks, each a list of compressed RLE dicts (frames); d, g, f: int64\n"
     "arrays of equal length. Entry k is |dets[d[k]][f[k]] & gts[g[k]][f[k]]| in pixels; each\n"
     "mask is decoded once however many pairs it is in."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rle",
                      "Mask areas and intersections from COCO compressed RLE strings.", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__rle(void) { return PyModule_Create(&module); }
