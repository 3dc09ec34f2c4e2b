/* Built only to be linked: tests/CMakeLists.txt links every library whole into this program,
 * so a public symbol defined in two libraries is a duplicate-definition error at build time. */
int main(void)
{
	return 0;
}
