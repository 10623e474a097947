/* trivial_cgi.c - the reference CGI of the benchmark: reads its standard
 * input and answers "ok", nothing else. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    char buf[4096];

    while (read(STDIN_FILENO, buf, sizeof buf) > 0)
        ;
    fputs("Content-Type: text/plain\r\n\r\nok\n", stdout);
    return 0;
}
