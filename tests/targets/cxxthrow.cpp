// cxxthrow: C++ exceptions thrown through several frames and caught, with
// cleanups (destructors) on the way. Under optd --relocate the frames it
// unwinds through must still unwind, or the program aborts in
// std::terminate; the output says how many were caught and cleaned up.
#include <cstdio>
#include <stdexcept>
#include <string>

static int cleanups;

struct Guard {
	~Guard() { cleanups++; }
};

__attribute__((noinline)) int deep(int n)
{
	Guard g;
	if (n == 0)
		throw std::runtime_error("bottom " + std::to_string(cleanups % 7));
	return deep(n - 1) + 1;
}

__attribute__((noinline)) int middle(int n)
{
	try {
		return deep(n);
	} catch (const std::logic_error &) {
		return -1;
	}
}

int main()
{
	int caught = 0;
	size_t chars = 0;

	for (int i = 0; i < 2000; i++) {
		try {
			middle(i % 25);
		} catch (const std::runtime_error &e) {
			caught++;
			chars += std::string(e.what()).size();
		}
	}
	std::printf("caught %d, cleanups %d, message chars %zu\n", caught, cleanups, chars);
	return caught == 2000 ? 0 : 1;
}
