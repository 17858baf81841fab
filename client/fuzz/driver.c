/*
 * driver.c: a small mutating driver for the fuzz targets, for a compiler
 * without libFuzzer (gcc -fsanitize=address,undefined).  It takes the
 * options of libFuzzer that fuzz/run.sh passes and ignores the others:
 *
 *   driver [-max_total_time=S] [-runs=N] [-max_len=N] [-seed=N]
 *          [-artifact_prefix=P] DIR|FILE ...
 *
 * Every file of the corpus is run first; then, until S seconds or N runs,
 * a random corpus entry with a few random mutations (bit flips, bytes of
 * JSON syntax, deletions, duplications, splices).  No coverage feedback:
 * it finds less than libFuzzer, and finds it the same way.  When a run
 * dies (a sanitizer report, a failed FUZZ_CHECK), the input is written to
 * P + "crash-" + its hash, as libFuzzer does.
 */
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

typedef struct
{
	uint8_t    *data;
	size_t		size;
} unit;

static unit *corpus;
static size_t ncorpus;
static const uint8_t *current;
static size_t current_size;
static char artifact[4096];
static uint64_t rng = 0x9E3779B97F4A7C15u;

/* xorshift64: fast, and the same sequence for the same -seed. */
static uint64_t
next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Writes the input being run to the artifact file; async-signal-safe. */
static void
save_current(void)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t	h = 0xcbf29ce484222325u;
	char		path[sizeof(artifact) + 32];
	size_t		i,
				n;
	int			fd;

	if (current == NULL)
		return;
	for (i = 0; i < current_size; i++)
		h = (h ^ current[i]) * 0x100000001b3u;
	n = strlen(artifact);
	memcpy(path, artifact, n);
	memcpy(path + n, "crash-", 6);
	n += 6;
	for (i = 0; i < 16; i++)
		path[n++] = hex[(h >> (60 - 4 * i)) & 15];
	path[n] = '\0';
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0)
	{
		if (write(fd, current, current_size) < 0 || close(fd) < 0)
			fd = -1;
		if (write(2, "Test unit written to ", 21) < 0 ||
			write(2, path, n) < 0 || write(2, "\n", 1) < 0)
			fd = -1;
	}
	current = NULL;
}

/* SIGABRT (a failed FUZZ_CHECK, UBSan with abort_on_error): save, then die. */
static void
on_abort(int sig)
{
	save_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Appends a copy of data to the corpus. */
static void
add_unit(const uint8_t *data, size_t size)
{
	unit	   *nc = realloc(corpus, (ncorpus + 1) * sizeof(unit));

	if (nc == NULL || (size && (nc[ncorpus].data = malloc(size)) == NULL))
	{
		fprintf(stderr, "driver: out of memory\n");
		exit(1);
	}
	corpus = nc;
	if (size)
		memcpy(corpus[ncorpus].data, data, size);
	else
		corpus[ncorpus].data = NULL;
	corpus[ncorpus++].size = size;
}

/* The first max_len bytes of a file, as a corpus entry. */
static void
load_file(const char *path, size_t max_len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	size_t		n;

	if (f == NULL)
		return;
	buf = malloc(max_len ? max_len : 1);
	if (buf == NULL)
		exit(1);
	n = fread(buf, 1, max_len, f);
	fclose(f);
	add_unit(buf, n);
	free(buf);
}

/* A file, or every regular file of a directory (not recursively). */
static void
load(const char *path, size_t max_len)
{
	struct stat st;
	DIR		   *d;
	struct dirent *e;
	char		p[4096];

	if (stat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode))
	{
		load_file(path, max_len);
		return;
	}
	if ((d = opendir(path)) == NULL)
		return;
	while ((e = readdir(d)) != NULL)
	{
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
			load_file(p, max_len);
	}
	closedir(d);
}

static void
run(const uint8_t *data, size_t size)
{
	/* a copy of its own, so that reads past the end are caught */
	uint8_t    *copy = malloc(size ? size : 1);

	if (copy == NULL)
		exit(1);
	if (size)
		memcpy(copy, data, size);
	current = copy;
	current_size = size;
	LLVMFuzzerTestOneInput(copy, size);
	current = NULL;
	free(copy);
}

/* Bytes that matter to the parsers: JSON syntax, escapes, digits. */
static const char *const tokens[] = {
	"{", "}", "[", "]", ":", ",", "\"", "\\", "\\u", "\\u0000", "\\ud800",
	"\\udc00", "\\ud83d\\ude00", "0", "1", "9", "-", ".", "e", "E+", "9223372036854775808",
	"99999999999999999999", "true", "false", "null", " ", "\n", "\xc3\xa9", "\xed\xa0\x80",
	"\xf4\x90\x80\x80", "\xff", "\"users\"", "\"balance_tracker\"", "\"transactions\"",
	"\"api_keys\"", "\"chat_history\"", "\"total\"", "\"spent\"", "\"amount\"",
	"\"messages\"", "\"role\"", "\"content\"", "\"tokens\"", "\"cost\"",
	"\"0a000000-0000-4000-8000-000000000001\"", "8999999999999.999999", "0.0000001",
};

/* One to four random changes of buf (size *n, room for max bytes). */
static void
mutate(uint8_t *buf, size_t *n, size_t max)
{
	int			changes = 1 + (int) (next_random() % 4);

	while (changes-- > 0)
	{
		size_t		at = *n ? next_random() % (*n + 1) : 0;
		size_t		len;

		switch (next_random() % 6)
		{
			case 0:				/* flip a bit */
				if (at < *n)
					buf[at] ^= (uint8_t) (1u << (next_random() % 8));
				break;
			case 1:				/* a random byte */
				if (at < *n)
					buf[at] = (uint8_t) next_random();
				break;
			case 2:				/* delete a range */
				len = *n - at ? next_random() % (*n - at) + 1 : 0;
				if (len > 16)
					len = 1 + len % 16;
				memmove(buf + at, buf + at + len, *n - at - len);
				*n -= len;
				break;
			case 3:				/* insert a token */
				{
					const char *t = tokens[next_random() % (sizeof(tokens) / sizeof(tokens[0]))];

					len = strlen(t);
					if (*n + len > max)
						break;
					memmove(buf + at + len, buf + at, *n - at);
					memcpy(buf + at, t, len);
					*n += len;
				}
				break;
			case 4:				/* duplicate a range */
				{
					size_t		from = *n ? next_random() % *n : 0;

					len = *n - from ? next_random() % (*n - from) + 1 : 0;
					if (len > 64)
						len = 1 + len % 64;
					if (*n + len > max)
						break;
					memmove(buf + at + len, buf + at, *n - at);
					memmove(buf + at, buf + (from < at ? from : from + len), len);
					*n += len;
				}
				break;
			default:			/* truncate */
				*n = at;
				break;
		}
	}
}

/* The options, the corpus once, then mutations until the time or the runs are up. */
int
main(int argc, char **argv)
{
	long		max_time = 0,
				runs = -1,
				done = 0;
	size_t		max_len = 65536,
				i;
	time_t		start = time(NULL);
	uint8_t    *buf;
	int			a;

	for (a = 1; a < argc; a++)
	{
		if (strncmp(argv[a], "-max_total_time=", 16) == 0)
			max_time = atol(argv[a] + 16);
		else if (strncmp(argv[a], "-runs=", 6) == 0)
			runs = atol(argv[a] + 6);
		else if (strncmp(argv[a], "-max_len=", 9) == 0)
			max_len = (size_t) atol(argv[a] + 9);
		else if (strncmp(argv[a], "-seed=", 6) == 0)
			rng ^= (uint64_t) atol(argv[a] + 6) * 0x2545F4914F6CDD1Du;
		else if (strncmp(argv[a], "-artifact_prefix=", 17) == 0)
			snprintf(artifact, sizeof(artifact), "%s", argv[a] + 17);
		else if (argv[a][0] != '-')
			load(argv[a], max_len);
	}
	if (max_len == 0)
		max_len = 1;
	__sanitizer_set_death_callback(save_current);
	signal(SIGABRT, on_abort);
	if (ncorpus == 0)
		add_unit((const uint8_t *) "", 0);

	for (i = 0; i < ncorpus; i++)
		run(corpus[i].data, corpus[i].size);
	fprintf(stderr, "driver: %zu corpus inputs run\n", ncorpus);

	buf = malloc(max_len);
	if (buf == NULL)
		return 1;
	while (runs < 0 ? max_time > 0 : done < runs)
	{
		const unit *u = &corpus[next_random() % ncorpus];
		size_t		n = u->size < max_len ? u->size : max_len;

		if ((done & 1023) == 0 && max_time > 0 && time(NULL) - start >= max_time)
			break;
		if (n)
			memcpy(buf, u->data, n);
		mutate(buf, &n, max_len);
		run(buf, n);
		done++;
	}
	fprintf(stderr, "Done %ld runs in %ld second(s)\n", done + (long) ncorpus,
			(long) (time(NULL) - start));
	free(buf);
	for (i = 0; i < ncorpus; i++)
		free(corpus[i].data);
	free(corpus);
	return 0;
}
