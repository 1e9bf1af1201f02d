"""A small built-in set of MBPP-style problems, written for this project, so the loop always has
work on a fresh machine with no MBPP file and no network.

Each problem is an instruction, a reference solution and three asserts, in MBPP's shape; ids are
``builtin/N`` (kind ``mbpp``, so prompts look like MBPP's). Problems 1-20 are the training split,
21-30 the validation split the promotion gate samples. ``tests/loop/test_builtin_tasks.py`` runs
every reference through the real sandbox.
"""

from __future__ import annotations

from sandbox.tasks import Task

VALIDATION_FROM = 21

# (instruction, reference, tests)
_PROBLEMS: list[tuple[str, str, tuple[str, ...]]] = [
    ("Write a function to return the sum of the squares of the even numbers in a list.",
     "def sum_even_squares(xs):\n    return sum(x * x for x in xs if x % 2 == 0)",
     ("assert sum_even_squares([1, 2, 3, 4]) == 20", "assert sum_even_squares([]) == 0",
      "assert sum_even_squares([5, 7]) == 0")),
    ("Write a function to count how many vowels (a, e, i, o, u, either case) a string has.",
     "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')",
     ("assert count_vowels('Hello') == 2", "assert count_vowels('xyz') == 0",
      "assert count_vowels('AEIOU') == 5")),
    ("Write a function to reverse the order of the words in a sentence.",
     "def reverse_words(s):\n    return ' '.join(s.split()[::-1])",
     ("assert reverse_words('one two three') == 'three two one'",
      "assert reverse_words('solo') == 'solo'", "assert reverse_words('a b') == 'b a'")),
    ("Write a function to return the second largest distinct value in a list of integers.",
     "def second_largest(xs):\n    return sorted(set(xs))[-2]",
     ("assert second_largest([4, 1, 7, 7, 3]) == 4", "assert second_largest([2, 9]) == 2",
      "assert second_largest([-1, -5, -3]) == -3")),
    ("Write a function to check whether a string reads the same backwards, ignoring case.",
     "def is_mirror_word(s):\n    return s.lower() == s.lower()[::-1]",
     ("assert is_mirror_word('Level') == True", "assert is_mirror_word('kayak') == True",
      "assert is_mirror_word('boat') == False")),
    ("Write a function to return the product of the digits of a positive integer.",
     "def digit_product(n):\n    p = 1\n    for d in str(n):\n        p *= int(d)\n    return p",
     ("assert digit_product(234) == 24", "assert digit_product(7) == 7",
      "assert digit_product(105) == 0")),
    ("Write a function to merge two sorted lists into one sorted list.",
     "def merge_sorted(a, b):\n    return sorted(a + b)",
     ("assert merge_sorted([1, 4], [2, 3]) == [1, 2, 3, 4]",
      "assert merge_sorted([], [5]) == [5]", "assert merge_sorted([1, 1], [1]) == [1, 1, 1]")),
    ("Write a function to count the words in a sentence that start with a capital letter.",
     "def count_capitalised(s):\n    return sum(1 for w in s.split() if w[:1].isupper())",
     ("assert count_capitalised('Ann met Bob today') == 2",
      "assert count_capitalised('no caps here') == 0", "assert count_capitalised('') == 0")),
    ("Write a function to rotate a list to the left by k positions.",
     ("def rotate_left(xs, k):\n    if not xs:\n        return []\n    k %= len(xs)\n"
     "    return xs[k:] + xs[:k]"),
     ("assert rotate_left([1, 2, 3, 4], 1) == [2, 3, 4, 1]",
      "assert rotate_left([1, 2, 3], 5) == [3, 1, 2]", "assert rotate_left([], 2) == []")),
    ("Write a function to return the number of distinct characters in a string.",
     "def distinct_chars(s):\n    return len(set(s))",
     ("assert distinct_chars('banana') == 3", "assert distinct_chars('') == 0",
      "assert distinct_chars('abc') == 3")),
    (("Write a function to return the list of numbers from a list that are greater than their "
     "left neighbour."),
     "def rising_points(xs):\n    return [b for a, b in zip(xs, xs[1:]) if b > a]",
     ("assert rising_points([1, 3, 2, 5]) == [3, 5]", "assert rising_points([5, 4, 3]) == []",
      "assert rising_points([7]) == []")),
    ("Write a function to convert a number of minutes into a string 'H:MM'.",
     "def minutes_to_clock(m):\n    return f'{m // 60}:{m % 60:02d}'",
     ("assert minutes_to_clock(75) == '1:15'", "assert minutes_to_clock(5) == '0:05'",
      "assert minutes_to_clock(600) == '10:00'")),
    ("Write a function to return the sum of the numbers on the main diagonal of a square matrix.",
     "def diagonal_sum(m):\n    return sum(m[i][i] for i in range(len(m)))",
     ("assert diagonal_sum([[1, 2], [3, 4]]) == 5", "assert diagonal_sum([[9]]) == 9",
      "assert diagonal_sum([[1, 0, 0], [0, 2, 0], [0, 0, 3]]) == 6")),
    ("Write a function to remove every occurrence of a given character from a string.",
     "def drop_char(s, c):\n    return s.replace(c, '')",
     ("assert drop_char('banana', 'a') == 'bnn'", "assert drop_char('abc', 'z') == 'abc'",
      "assert drop_char('', 'x') == ''")),
    ("Write a function to return how many times the most frequent element occurs in a list.",
     "def top_count(xs):\n    return max((xs.count(x) for x in xs), default=0)",
     ("assert top_count([1, 2, 2, 3, 2]) == 3", "assert top_count([]) == 0",
      "assert top_count(['a', 'b']) == 1")),
    ("Write a function to check whether all the elements of a list are different.",
     "def all_unique(xs):\n    return len(set(xs)) == len(xs)",
     ("assert all_unique([1, 2, 3]) == True", "assert all_unique([1, 2, 1]) == False",
      "assert all_unique([]) == True")),
    ("Write a function to return the running totals of a list of numbers.",
     ("def running_totals(xs):\n    out, total = [], 0\n    for x in xs:\n        total += x\n"
     "        out.append(total)\n    return out"),
     ("assert running_totals([1, 2, 3]) == [1, 3, 6]", "assert running_totals([]) == []",
      "assert running_totals([5, -5]) == [5, 0]")),
    ("Write a function to return the initials of a full name in upper case, joined by dots.",
     "def initials(name):\n    return '.'.join(w[0].upper() for w in name.split())",
     ("assert initials('ada lovelace') == 'A.L'", ("assert initials('Alan Mathison Turing') == "
      "'A.M.T'"), "assert initials('x') == 'X'")),
    (("Write a function to return the number of integers between a and b inclusive that are "
     "divisible by k."),
     "def count_divisible(a, b, k):\n    return sum(1 for i in range(a, b + 1) if i % k == 0)",
     ("assert count_divisible(1, 10, 3) == 3", "assert count_divisible(4, 4, 2) == 1",
      "assert count_divisible(5, 9, 10) == 0")),
    ("Write a function to split a list into chunks of a given size (the last may be shorter).",
     "def chunk(xs, size):\n    return [xs[i:i + size] for i in range(0, len(xs), size)]",
     ("assert chunk([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]", "assert chunk([], 3) == []",
      "assert chunk([1, 2], 5) == [[1, 2]]")),
    # -- validation (the promotion gate) ------------------------------------------------------
    ("Write a function to return the largest absolute difference between two numbers in a list.",
     "def widest_gap(xs):\n    return max(xs) - min(xs)",
     ("assert widest_gap([3, 9, 1]) == 8", "assert widest_gap([5]) == 0",
      "assert widest_gap([-2, 2]) == 4")),
    ("Write a function to return a string with its first and last characters swapped.",
     "def swap_ends(s):\n    if len(s) < 2:\n        return s\n    return s[-1] + s[1:-1] + s[0]",
     ("assert swap_ends('python') == 'nythop'", "assert swap_ends('a') == 'a'",
      "assert swap_ends('ab') == 'ba'")),
    ("Write a function to count the negative numbers in a list.",
     "def count_negatives(xs):\n    return sum(1 for x in xs if x < 0)",
     ("assert count_negatives([-1, 2, -3]) == 2", "assert count_negatives([]) == 0",
      "assert count_negatives([0, 1]) == 0")),
    (("Write a function to return the average of a non-empty list of numbers, rounded to two "
     "decimals."),
     "def mean2(xs):\n    return round(sum(xs) / len(xs), 2)",
     ("assert mean2([1, 2, 3, 4]) == 2.5", "assert mean2([1, 1, 2]) == 1.33",
      "assert mean2([10]) == 10")),
    (("Write a function to return the keys of a dictionary whose values are above a threshold, "
     "sorted."),
     "def keys_above(d, t):\n    return sorted(k for k, v in d.items() if v > t)",
     ("assert keys_above({'a': 3, 'b': 1, 'c': 5}, 2) == ['a', 'c']",
      "assert keys_above({}, 0) == []", "assert keys_above({'x': 1}, 1) == []")),
    ("Write a function to double every odd number in a list and keep the even ones.",
     "def double_odds(xs):\n    return [x * 2 if x % 2 else x for x in xs]",
     ("assert double_odds([1, 2, 3]) == [2, 2, 6]", "assert double_odds([]) == []",
      "assert double_odds([4]) == [4]")),
    ("Write a function to return the length of the longest word in a sentence.",
     "def longest_word_length(s):\n    return max((len(w) for w in s.split()), default=0)",
     ("assert longest_word_length('a quick fox') == 5", "assert longest_word_length('') == 0",
      "assert longest_word_length('hi') == 2")),
    ("Write a function to check whether a number is a perfect square.",
     ("def is_square(n):\n    if n < 0:\n        return False\n    r = int(n ** 0.5)\n"
     "    while r * r > n:\n        r -= 1\n    while (r + 1) * (r + 1) <= n:\n        r += 1\n"
     "    return r * r == n"),
     ("assert is_square(16) == True", "assert is_square(15) == False",
      "assert is_square(0) == True")),
    ("Write a function to interleave two lists of equal length.",
     "def interleave(a, b):\n    return [x for pair in zip(a, b) for x in pair]",
     ("assert interleave([1, 3], [2, 4]) == [1, 2, 3, 4]", "assert interleave([], []) == []",
      "assert interleave(['a'], ['b']) == ['a', 'b']")),
    ("Write a function to return the sum of the digits of a non-negative integer.",
     "def digit_sum(n):\n    return sum(int(d) for d in str(n))",
     ("assert digit_sum(123) == 6", "assert digit_sum(0) == 0", "assert digit_sum(909) == 18")),
]


def builtin_tasks() -> list[Task]:
    """Every built-in problem as a sandbox ``Task`` (``builtin/1`` ... ``builtin/30``)."""
    return [Task(task_id=f"builtin/{i}", kind="mbpp", instruction=text, tests=tests,
                 reference=reference)
            for i, (text, reference, tests) in enumerate(_PROBLEMS, start=1)]


def builtin_split(task: Task) -> str:
    """``train`` for problems 1-20, ``validation`` for 21-30."""
    return "validation" if task.number >= VALIDATION_FROM else "train"
