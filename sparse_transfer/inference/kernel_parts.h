/* How the toolkit's C kernels split y among threads: whole token tiles per part, or, when there
 * are fewer tiles than threads (a short batch), slices of the output rows over all tiles. */
#include <stdint.h>

typedef struct {
  int64_t tile_begin, tile_end, row_begin, row_end;
} kernel_part;

static inline int64_t kernel_part_count(int64_t tiles, int64_t threads) { return tiles < threads ? threads : tiles; }

static inline kernel_part kernel_part_of(int64_t part, int64_t tiles, int64_t out_features, int64_t threads) {
  kernel_part p = {part, part + 1, 0, out_features};
  if (tiles < threads) {
    p.tile_begin = 0;
    p.tile_end = tiles;
    p.row_begin = part * out_features / threads;
    p.row_end = (part + 1) * out_features / threads;
  }
  return p;
}
